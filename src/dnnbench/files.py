"""Output files written whole or not at all: a temporary name beside the target, then one rename.

A full disk, a read-only folder or a crash mid-write leaves the old file (or report) as it was, never a
0-byte export or a report without its index.html.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import UsageError

# errors of the place written to (not of the program): worded for the user instead of a traceback
_PLACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOENT, errno.ENOTDIR,
                 errno.EISDIR, errno.EEXIST}


class OutputError(UsageError):
    """An output file or folder that cannot be written, worded for the user."""


def output_error(path: Path, error: OSError) -> OutputError:
    """One line: which file, why, and what to do; says the target was left as it was."""
    folder = path.parent
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        why, step = "the disk is full", f"free some space on the disk holding {folder} and try again"
    elif error.errno == errno.EROFS:
        why, step = f"{folder} is on a read-only filesystem", "choose a folder you can write to"
    elif error.errno in (errno.EACCES, errno.EPERM):
        why, step = f"no permission to write in {folder}", "choose a folder you can write to"
    elif error.errno in (errno.ENOENT, errno.ENOTDIR):
        why, step = f"the folder {folder} does not exist", "create it or choose another path"
    else:
        why, step = error.strerror or str(error), "choose another path"
    return OutputError(f"cannot write {path}: {why}; {step}. Nothing was written ({path.name} left as it was)")


def _is_place_error(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in _PLACE_ERRNOS


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _check_folder(folder: Path, target: Path) -> None:
    if not folder.exists():
        ancestor = next((p for p in folder.parents if p.exists()), None)
        if ancestor is not None and not ancestor.is_dir():
            raise OutputError(f"cannot write {target}: {ancestor} is a file, not a folder; choose another path")
        raise OutputError(f"cannot write {target}: the folder {folder} does not exist; create it or choose "
                          "another path")
    if not folder.is_dir():
        raise OutputError(f"cannot write {target}: {folder} is a file, not a folder; choose another path")


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yields a temporary path beside `path` to write to; once the block succeeds it replaces `path` in one
    rename. On any failure the temporary file is removed and `path` is left as it was."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a folder; name a file")
    if path.is_symlink():  # write through the link: renaming onto it would replace the link itself
        path = Path(os.path.realpath(path))
    if path.exists() and not path.is_file():
        # a device, FIFO or socket (/dev/null, /dev/stdout, a pipe): written in place, never renamed over
        yield from _written_in_place(path)
        return
    _check_folder(path.parent, path)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise output_error(path, e) from e
    os.close(fd)
    tmp = Path(name)
    with _staging(tmp, path):
        yield tmp
        with open(tmp, "rb+") as f:  # on disk before it takes the old file's place
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; an export is an ordinary file
        os.replace(tmp, path)


def _written_in_place(path: Path) -> Iterator[Path]:
    """For a target that is not a regular file: the text is staged in a temporary file, then copied into it."""
    fd, name = tempfile.mkstemp(prefix="dnnbench-", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    with _staging(tmp, path):
        yield tmp
        with open(tmp, "rb") as staged, open(path, "wb") as target:
            shutil.copyfileobj(staged, target)


@contextmanager
def _staging(tmp: Path, path: Path) -> Iterator[None]:
    """Errors of the place written to worded for the user; the temporary file gone whatever happens."""
    try:
        yield
    except OSError as e:
        if _is_place_error(e):
            raise output_error(path, e) from e
        raise
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def staged_folder(target: str | Path, last: str = "index.html") -> Iterator[Path]:
    """Yields an empty temporary folder to write a whole set of files into (a report); once the block succeeds
    they take their place in `target`: by one rename of the folder when `target` is new, else file by file
    with `last` moved last (so a reader never finds an index without its images). On any failure nothing in
    `target` has changed."""
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise OutputError(f"cannot write a report into {target}: it exists and is not a folder; choose another "
                          "--output")
    fresh = not target.exists()
    try:
        if fresh:
            parent = target.absolute().parent
            ancestor = next((p for p in (parent, *parent.parents) if p.exists()), None)
            if ancestor is not None and not ancestor.is_dir():
                raise OutputError(f"cannot write {target}: {ancestor} is a file, not a folder; choose another "
                                  "--output")
            parent.mkdir(parents=True, exist_ok=True)
            stage = Path(tempfile.mkdtemp(prefix=f".{target.absolute().name}.", suffix=".tmp", dir=parent))
        else:  # inside the target: the same filesystem, so every move below is a rename
            stage = Path(tempfile.mkdtemp(prefix=".dnnbench-", suffix=".tmp", dir=target))
    except OSError as e:
        raise output_error(target / last, e) from e
    try:
        yield stage
        os.chmod(stage, 0o777 & ~_umask())
        if fresh:
            try:
                os.rename(stage, target)
                return
            except OSError as e:  # someone created it meanwhile: fall back to moving the files
                if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
        target.mkdir(parents=True, exist_ok=True)
        for file in sorted(stage.iterdir(), key=lambda p: (p.name == last, p.name)):
            os.replace(file, target / file.name)
    except OSError as e:
        if _is_place_error(e):
            raise output_error(target / last, e) from e
        raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)
