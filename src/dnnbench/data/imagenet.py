"""Find the images of an ImageNet-1k validation set and their labels, in the layouts people have.

    >>> split = open_imagenet("/data/imagenet/val")          # doctest: +SKIP
    >>> split.layout, len(split), split.fingerprint.sha256[:12]  # doctest: +SKIP

Images are listed, never opened here: a corrupt file is found (and counted) when it is decoded.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections import defaultdict
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .classes import NUM_CLASSES, LabelError, imagenet_synsets, is_synset, parse_label, synset_to_index

IMAGE_SUFFIXES = frozenset({".jpeg", ".jpg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff"})
DEVKIT_GROUND_TRUTH = "ILSVRC2012_validation_ground_truth.txt"
KAGGLE_SOLUTION = "LOC_val_solution.csv"
KAGGLE_IMAGES = Path("ILSVRC/Data/CLS-LOC/val")
DEVKIT_META = "meta.mat"
_DEVKIT_IMAGE = re.compile(r"ILSVRC2012_val_(\d{8})$")

ACCEPTED_LAYOUTS = f"""Accepted layouts:
  1. class folders: DIR/n01440764/*.JPEG, one folder per synset (DIR itself or DIR/val)
  2. devkit: a flat folder of ILSVRC2012_val_XXXXXXXX.JPEG plus {DEVKIT_GROUND_TRUTH} (in DIR or given
     with --labels) plus the devkit's class order (its IDs 1..1000 are not the model's order): --synsets
     {DEVKIT_META} (found by itself next to the ground-truth file) or a text file of the 1000
     synsets, line i = devkit ID i
  3. Kaggle: a flat folder of images plus {KAGGLE_SOLUTION} (ImageId,PredictionString; in DIR or its
     parent, or given with --labels), or the Kaggle top folder holding both
  4. a CSV of path,label (header optional): --data FILE.csv (paths relative to the file), or --data DIR
     --labels FILE.csv (paths relative to DIR); label = synset (n01440764) or class index 0..999"""


class DatasetLayoutError(UsageError):
    """The folder given is not an ImageNet validation set in any layout dnnbench reads."""

    def __init__(self, problem: str):
        super().__init__(f"{problem}\n{ACCEPTED_LAYOUTS}")


@dataclass(frozen=True)
class DatasetFingerprint:
    """Identity of an evaluation set: where it is, how many images, and a hash of its sorted
    `path<TAB>label` list (so that a changed file list or relabelling changes the fingerprint)."""

    path: str
    images: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "images": self.images, "sha256": self.sha256}


@dataclass(frozen=True)
class ImageNetSplit:
    """Labelled images: `paths[i]` (relative to `root`, or absolute) has class index `labels[i]`."""

    root: Path
    layout: str  # "class-folders" | "devkit" | "kaggle" | "csv"
    paths: tuple[str, ...]
    labels: tuple[int, ...]
    label_file: Path | None = None
    missing_images: int = 0  # labelled in the label file but absent from the folder

    def __len__(self) -> int:
        return len(self.paths)

    def file(self, i: int) -> Path:
        return self.root / self.paths[i]

    @property
    def files(self) -> list[str]:
        return [str(self.root / p) for p in self.paths]

    @cached_property
    def classes(self) -> tuple[int, ...]:
        return tuple(sorted(set(self.labels)))

    @cached_property
    def fingerprint(self) -> DatasetFingerprint:
        listing = "".join(f"{p}\t{label}\n" for p, label in sorted(zip(self.paths, self.labels)))
        return DatasetFingerprint(str(self.root.resolve()), len(self.paths), hashlib.sha256(listing.encode()).hexdigest())

    def subset(self, limit: int | None) -> ImageNetSplit:
        """At most `limit` images, the same number from every class (classes with too few images give
        all they have, the rest is shared among the others). Deterministic: which images a class gives
        follows a hash of their paths, not the order of the file system."""
        if limit is None or limit >= len(self):
            return self
        if limit < 1:
            raise UsageError(f"--limit must be at least 1, not {limit}")
        by_class: dict[int, list[int]] = defaultdict(list)
        for i, label in enumerate(self.labels):
            by_class[label].append(i)
        queues = [sorted(by_class[c], key=lambda i: hashlib.sha1(self.paths[i].encode()).hexdigest())
                  for c in sorted(by_class)]
        chosen: list[int] = []
        depth = 0
        while len(chosen) < limit:  # round robin over classes, in class-index order
            for queue in queues:
                if depth < len(queue) and len(chosen) < limit:
                    chosen.append(queue[depth])
            depth += 1
        keep = sorted(chosen)
        return replace(self, paths=tuple(self.paths[i] for i in keep), labels=tuple(self.labels[i] for i in keep))


def open_imagenet(data: str | Path, labels: str | Path | None = None, synsets: str | Path | None = None) -> ImageNetSplit:
    """The labelled images at `data` (a folder, or a path,label CSV), in any of ACCEPTED_LAYOUTS."""
    data = Path(data).expanduser()
    if not data.exists():
        raise DatasetLayoutError(f"{data} does not exist.")
    if data.is_file():
        if labels is not None:
            raise UsageError(f"--data {data} is a file: give the images' folder as --data and the label file as --labels")
        return _from_label_file(data, data.parent, synsets)
    if labels is not None:
        return _from_label_file(Path(labels).expanduser(), data, synsets)
    for root in (data / "val", data):
        synset_dirs = [d for d in _subdirs(root) if is_synset(d.name)]
        if synset_dirs:
            return _class_folders(root, synset_dirs)
    if (data / KAGGLE_SOLUTION).is_file() and (data / KAGGLE_IMAGES).is_dir():
        return _from_label_file(data / KAGGLE_SOLUTION, data / KAGGLE_IMAGES, synsets)
    for folder in (data, data.parent):
        for name in (DEVKIT_GROUND_TRUTH, KAGGLE_SOLUTION):
            if (folder / name).is_file():
                return _from_label_file(folder / name, data, synsets)
    images = _images(data)
    others = [d.name for d in _subdirs(data)]
    if images:
        raise DatasetLayoutError(f"{data} holds {len(images)} images in a flat folder but no label file "
                                 f"({DEVKIT_GROUND_TRUTH} or {KAGGLE_SOLUTION}) was found; give one with --labels.")
    if others:
        shown = ", ".join(sorted(others)[:5]) + (", ..." if len(others) > 5 else "")
        raise DatasetLayoutError(f"{data} has sub-folders ({shown}) but none named after an ImageNet synset "
                                 "(like n01440764), and no images.")
    raise DatasetLayoutError(f"{data} is empty.")


def _subdirs(folder: Path) -> list[Path]:
    return sorted(d for d in folder.iterdir() if d.is_dir()) if folder.is_dir() else []


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _class_folders(root: Path, synset_dirs: list[Path]) -> ImageNetSplit:
    index = synset_to_index()
    unknown = [d.name for d in synset_dirs if d.name not in index]
    if unknown:
        raise LabelError(f"{root}: folder {unknown[0]} is a WordNet synset but not one of the 1000 ImageNet-1k classes"
                         + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""))
    paths, labels = [], []
    for folder in synset_dirs:
        for image in _images(folder):
            paths.append(f"{folder.name}/{image.name}")
            labels.append(index[folder.name])
    if not paths:
        raise DatasetLayoutError(f"{root} has {len(synset_dirs)} class folders but no images in them.")
    return ImageNetSplit(root, "class-folders", tuple(paths), tuple(labels))


def _from_label_file(label_file: Path, image_dir: Path, synsets: str | Path | None) -> ImageNetSplit:
    if not label_file.is_file():
        raise DatasetLayoutError(f"label file {label_file} does not exist.")
    if not image_dir.is_dir():
        raise DatasetLayoutError(f"image folder {image_dir} does not exist.")
    if label_file.suffix.lower() == ".txt":
        return _devkit(label_file, image_dir, synsets)
    try:
        with open(label_file, newline="", encoding="utf-8-sig") as f:
            rows = [row for row in csv.reader(f) if row and any(cell.strip() for cell in row)]
    except UnicodeDecodeError as exc:
        raise DatasetLayoutError(f"{label_file} is not a text label file (byte {exc.object[exc.start]:#04x} at "
                                 f"offset {exc.start} is not UTF-8): give a path,label CSV or the devkit's "
                                 "ground-truth file.") from None
    if not rows:
        raise DatasetLayoutError(f"{label_file} is empty.")
    header = [cell.strip() for cell in rows[0]]
    if header[:2] == ["ImageId", "PredictionString"]:
        return _kaggle(label_file, rows[1:], image_dir)
    return _path_label_csv(label_file, rows, image_dir)


def _flat_images_by_stem(image_dir: Path) -> dict[str, str]:
    images = _images(image_dir)
    if not images:
        raise DatasetLayoutError(f"{image_dir} holds no images.")
    return {p.stem: p.name for p in images}


def _devkit(ground_truth: Path, image_dir: Path, synsets: str | Path | None) -> ImageNetSplit:
    lines = [line.strip() for line in ground_truth.read_text(encoding="ascii", errors="replace").splitlines()]
    ids = []
    for number, line in enumerate(lines, 1):
        if not line:
            continue
        if not line.isdigit() or not 1 <= int(line) <= NUM_CLASSES:
            raise LabelError(f"{ground_truth}:{number}: {line!r} is not a devkit class ID 1..{NUM_CLASSES}")
        ids.append(int(line))
    order = devkit_class_order(synsets, ground_truth)
    index = synset_to_index()
    paths, labels = [], []
    for stem, name in _flat_images_by_stem(image_dir).items():
        match = _DEVKIT_IMAGE.fullmatch(stem)
        if not match:
            raise DatasetLayoutError(f"{image_dir / name} is not named ILSVRC2012_val_XXXXXXXX, so line XXXXXXXX "
                                     f"of {ground_truth.name} cannot label it.")
        number = int(match.group(1))
        if not 1 <= number <= len(ids):
            raise LabelError(f"{image_dir / name}: {ground_truth.name} has {len(ids)} labels, none for image {number}")
        paths.append(name)
        labels.append(index[order[ids[number - 1] - 1]])
    return ImageNetSplit(image_dir, "devkit", tuple(paths), tuple(labels), ground_truth, len(ids) - len(paths))


def devkit_class_order(synsets: str | Path | None, ground_truth: Path) -> tuple[str, ...]:
    """The synset of each devkit ID 1..1000, from meta.mat or a text list (searched for next to the
    ground-truth file when not given)."""
    if synsets is None:
        beside = ground_truth.parent / DEVKIT_META
        if not beside.is_file():
            raise DatasetLayoutError(
                f"{ground_truth.name} numbers the classes 1..1000 in the devkit's own order, which is not the "
                f"order models use; dnnbench needs that order to read it. Give --synsets with the devkit's "
                f"{DEVKIT_META} (ILSVRC2012_devkit_t12/data/{DEVKIT_META}) or a text file "
                f"of its 1000 synsets, line i = devkit ID i."
            )
        synsets = beside
    path = Path(synsets).expanduser()
    if not path.is_file():
        raise DatasetLayoutError(f"synset list {path} does not exist.")
    order = _meta_mat_order(path) if path.suffix.lower() == ".mat" else _text_order(path)
    index = synset_to_index()
    unknown = [s for s in order if s not in index]
    if len(order) != NUM_CLASSES or len(set(order)) != NUM_CLASSES or unknown:
        problem = f"{unknown[0]} is not an ImageNet-1k synset" if unknown else \
            f"it lists {len(order)} synsets ({len(set(order))} distinct), not the {NUM_CLASSES} classes"
        raise LabelError(f"synset list {path}: {problem}")
    return order


def _text_order(path: Path) -> tuple[str, ...]:
    return tuple(line.split()[0] for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


def _meta_mat_order(path: Path) -> tuple[str, ...]:
    from scipy.io import loadmat

    entries = loadmat(str(path), squeeze_me=True)["synsets"]
    leaves = {int(e["ILSVRC2012_ID"]): str(e["WNID"]) for e in entries if int(e["ILSVRC2012_ID"]) <= NUM_CLASSES}
    return tuple(leaves[i] for i in sorted(leaves))


def _kaggle(solution: Path, rows: list[list[str]], image_dir: Path) -> ImageNetSplit:
    by_id = {}
    for number, row in enumerate(rows, 2):
        if len(row) < 2 or not row[1].split():
            raise LabelError(f"{solution}:{number}: expected ImageId,PredictionString, got {','.join(row)!r}")
        by_id[row[0].strip()] = parse_label(row[1].split()[0], f"{solution}:{number}")
    paths, labels = [], []
    for stem, name in _flat_images_by_stem(image_dir).items():
        if stem not in by_id:
            raise LabelError(f"{image_dir / name} has no row in {solution.name}")
        paths.append(name)
        labels.append(by_id[stem])
    return ImageNetSplit(image_dir, "kaggle", tuple(paths), tuple(labels), solution, len(by_id) - len(paths))


def _path_label_csv(label_file: Path, rows: list[list[str]], image_dir: Path) -> ImageNetSplit:
    if [cell.strip().lower() for cell in rows[0][:2]] == ["path", "label"]:
        rows = rows[1:]
        start = 2
    else:
        start = 1
    paths, labels = [], []
    for number, row in enumerate(rows, start):
        if len(row) < 2:
            raise DatasetLayoutError(f"{label_file}:{number}: expected path,label, got {','.join(row)!r}")
        paths.append(row[0].strip())
        labels.append(parse_label(row[1], f"{label_file}:{number}"))
    if not paths:
        raise DatasetLayoutError(f"{label_file} has a header but no rows.")
    # unreadable or missing files are found (and counted) when decoded, as corrupt images are
    return ImageNetSplit(image_dir, "csv", tuple(paths), tuple(labels), label_file)


def synset_of(label: int) -> str:
    return imagenet_synsets()[label]
