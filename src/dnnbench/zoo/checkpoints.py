"""Checkpoints: reading, fitting and caching them, shared by the sources' weight loaders
(`zoo/sources/`) and by `zoo.weights`.

Every pickle is read with `weights_only=True`: a checkpoint that would run code is refused. Offline
(`DNNBENCH_OFFLINE=1` or `HF_HUB_OFFLINE=1`) nothing is downloaded; a file that is not cached gives an
error naming its URL and the exact place to put it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import socket
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from ..errors import DnnbenchError
from .spec import ModelSpec

OFFLINE_VARIABLES = ("DNNBENCH_OFFLINE", "HF_HUB_OFFLINE")
DOWNLOAD_TIMEOUT_S = 60.0  # a black-holed network must end in an error, not a hang
_NESTED_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "state_dict_ema", "model_ema")
_WRAPPER_PREFIXES = ("module.", "model.", "_orig_mod.")  # DataParallel/DDP, Lightning-style, torch.compile


class WeightsError(DnnbenchError):
    """Weights that cannot be loaded into a model."""


class WeightsUnavailableError(WeightsError):
    """No weights to load here and now: none exist, or they are not cached and cannot be downloaded."""


class WeightsMismatchError(WeightsError):
    """A checkpoint whose tensors do not fit the architecture."""


class UnsafeCheckpointError(WeightsError):
    """A pickle that would execute code (or build arbitrary objects) when loaded."""


@dataclass(frozen=True)
class WeightsIdentity:
    """Which weights a result was measured with."""

    source: str  # "torchvision" | "timm" | "pretrainedmodels" | "file"
    ref: str | None  # the library's name for them; None for a file
    file: str
    sha256: str
    url: str | None = None
    checkpoint_key: str | None = None  # the nested entry of the checkpoint that held the state dict
    stripped_prefix: str | None = None  # wrapper prefix removed from every key

    @property
    def config_key(self) -> str:
        return self.ref if self.ref else f"file:sha256:{self.sha256}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LoadedModel:
    model: nn.Module
    weights: WeightsIdentity


def is_offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on") for v in OFFLINE_VARIABLES)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- files ---------------------------------------------------------------------------------------


def _is_safetensors(path: Path) -> bool:
    if path.suffix == ".safetensors":
        return True
    with open(path, "rb") as f:
        head = f.read(9)
    # safetensors: an 8-byte little-endian header length, then the JSON header
    return len(head) == 9 and head[8:9] == b"{" and not head.startswith((b"PK", b"\x80"))


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], str | None]:
    """The tensors of a checkpoint file, and the nested key they were under (e.g. "state_dict")."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    if _is_safetensors(path):
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu"), None
        except Exception as e:
            raise WeightsError(f"cannot read {path} as safetensors: {e}") from None
    with torch_load_errors(path), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # e.g. "pickle protocol 4": the refusal says it better
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    return _unwrap(checkpoint, path)


def _unwrap(checkpoint: Any, path: Path) -> tuple[dict[str, torch.Tensor], str | None]:
    trail: list[str] = []
    while isinstance(checkpoint, Mapping):
        nested = next((k for k in _NESTED_KEYS if isinstance(checkpoint.get(k), Mapping)), None)
        if nested is None:
            break
        trail.append(nested)
        checkpoint = checkpoint[nested]
    tensors = {}
    if isinstance(checkpoint, Mapping):
        tensors = {k: v for k, v in checkpoint.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        what = type(checkpoint).__name__
        raise WeightsError(f"{path} holds no state dict (a {what} without tensors; looked under "
                           f"{', '.join(_NESTED_KEYS)})")
    return tensors, ".".join(trail) or None


@contextlib.contextmanager
def torch_load_errors(path: Path) -> Iterator[None]:
    """torch.load's failures, worded for the user; a refused pickle says why it was refused."""
    try:
        yield
    except pickle.UnpicklingError as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        # torch words it differently across versions; the line naming the global is the reason
        reason = next((line for line in lines if "GLOBAL" in line or "Unsupported" in line), lines[-1] if lines else "")
        reason = reason.removeprefix("WeightsUnpickler error: ")
        raise UnsafeCheckpointError(
            f"{path} was refused: it is a pickle that needs more than tensors to load ({reason}), and loading "
            "it could run arbitrary code. dnnbench reads checkpoints with torch.load(weights_only=True) only. "
            "If you trust its origin, re-save just the state dict (torch.save(model.state_dict(), ...)) or "
            "convert it to safetensors."
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise WeightsError(f"cannot read checkpoint {path}: {str(e).splitlines()[0]}") from None


def _strip_wrapper_prefixes(state: dict[str, torch.Tensor], model_keys: set[str]) -> tuple[dict, str | None]:
    """Remove `module.` / `model.` / `_orig_mod.` from every key when that makes the keys fit better."""
    stripped = ""
    while True:
        for prefix in _WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in state):
                candidate = {k[len(prefix):]: v for k, v in state.items()}
                if len(model_keys & candidate.keys()) > len(model_keys & state.keys()):
                    state, stripped = candidate, stripped + prefix
                    break
        else:
            return state, stripped or None


def fit_state_dict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> str | None:
    """Load `state` into `model`, strictly; returns the wrapper prefix that was stripped. Refuses with the
    first mismatching key (in the model's order), and the missing and unexpected keys."""
    expected = model.state_dict()
    state, prefix = _strip_wrapper_prefixes(state, set(expected))
    mismatched = [(k, tuple(state[k].shape), tuple(v.shape)) for k, v in expected.items()
                  if k in state and state[k].shape != v.shape]
    # checkpoints from before PyTorch 0.4.1 have no BatchNorm step counters; PyTorch fills them in
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    if mismatched or missing or unexpected:
        raise WeightsMismatchError(_mismatch_message(source, model, mismatched, missing, unexpected))
    model.load_state_dict(state, strict=False)
    return prefix


def _listing(keys: list[str], limit: int = 5) -> str:
    return ", ".join(keys[:limit]) + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def _mismatch_message(source: str, model: nn.Module, mismatched: list, missing: list, unexpected: list) -> str:
    parts = [f"{source} does not fit {type(model).__name__}"]
    if mismatched:
        key, got, want = mismatched[0]
        parts.append(f"first mismatching key {key!r}: shape {list(got)} in the checkpoint, {list(want)} in the model"
                     + (f" ({len(mismatched)} mismatching tensors in all)" if len(mismatched) > 1 else ""))
    if missing:
        parts.append(f"missing keys ({len(missing)}): {_listing(missing)}")
    if unexpected:
        parts.append(f"unexpected keys ({len(unexpected)}): {_listing(unexpected)}")
    return "; ".join(parts) + ". Is it a checkpoint of another architecture or number of classes?"


# --- caches and downloads ------------------------------------------------------------------------


def hub_checkpoint_path(url: str) -> Path:
    """Where torch.hub.load_state_dict_from_url keeps `url`: $TORCH_HOME/hub/checkpoints/<file name>."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment at call time (huggingface_hub reads it once)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


@contextlib.contextmanager
def _download_timeout() -> Iterator[None]:
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def ensure_in_hub_cache(spec: ModelSpec, url: str, check_hash: bool) -> Path:
    """The cached file for `url`, downloaded with torch.hub's own downloader if missing and online."""
    path = hub_checkpoint_path(url)
    if path.is_file():
        return path
    how = (f"download\n  {url}\nto\n  {path}\n(for example: mkdir -p {path.parent} && curl -L -o {path} {url}), "
           "or pass a checkpoint with --weights FILE")
    if is_offline():
        raise WeightsUnavailableError(
            f"{spec.id}: weights {spec.weights.ref} are not cached and dnnbench is offline "
            f"({' or '.join(OFFLINE_VARIABLES)} set); {how}")
    path.parent.mkdir(parents=True, exist_ok=True)
    found = torch.hub.HASH_REGEX.search(path.name) if check_hash else None
    try:
        with _download_timeout():
            torch.hub.download_url_to_file(url, str(path), found.group(1) if found else None, progress=True)
    except Exception as e:
        raise WeightsUnavailableError(f"{spec.id}: could not download {url} ({type(e).__name__}: {e}); {how}") from None
    return path


def hf_hub_file(spec: ModelSpec, hub_id: str, filename: str | None) -> tuple[Path, str]:
    """timm's weights on the Hugging Face hub: the cached file (downloading it when online), and its URL.
    Without a filename, timm looks for model.safetensors, then pytorch_model.bin; so does this."""
    from huggingface_hub import hf_hub_download, hf_hub_url
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    repo, _, revision = hub_id.partition("@")
    names = [filename] if filename else ["model.safetensors", "pytorch_model.bin"]
    cache, offline = hf_cache_dir(), is_offline()
    problems = []
    for name in names:
        try:
            with _download_timeout():
                path = hf_hub_download(repo, name, revision=revision or None, cache_dir=cache, local_files_only=offline)
            return Path(path), hf_hub_url(repo, name, revision=revision or None)
        except (LocalEntryNotFoundError, EntryNotFoundError) as e:
            problems.append(f"{name}: {type(e).__name__}")
        except Exception as e:  # network, authentication, ...
            problems.append(f"{name}: {type(e).__name__}: {str(e).splitlines()[0]}")
    url = hf_hub_url(repo, names[0], revision=revision or None)
    state = "dnnbench is offline and they are not" if offline else "they could not be fetched or found"
    raise WeightsUnavailableError(
        f"{spec.id}: weights {spec.weights.ref} come from the Hugging Face hub ({repo}) and {state} in the cache "
        f"{cache} ({'; '.join(problems)}). On a machine with internet run\n  hf download {repo} {names[0]} "
        f"--cache-dir {cache}\nand copy {cache / ('models--' + repo.replace('/', '--'))} here, or download\n  {url}\n"
        "anywhere and pass it with --weights FILE")


# --- helpers the sources' loaders share (zoo/sources/) -----------------------------------------


@contextlib.contextmanager
def torchvision_reads_weights_only() -> Iterator[None]:
    """torchvision's builders read the cached file with torch.hub.load_state_dict_from_url, whose default
    unpickles anything; for the duration of one build it reads tensors only."""
    from torchvision.models import _api

    original = _api.load_state_dict_from_url

    def weights_only(url: str, *args: Any, **kwargs: Any) -> Any:
        kwargs["weights_only"] = True
        return original(url, *args, **kwargs)

    _api.load_state_dict_from_url = weights_only
    try:
        yield
    finally:
        _api.load_state_dict_from_url = original


@contextlib.contextmanager
def library_load_errors(spec: ModelSpec, path: Path) -> Iterator[None]:
    """A cached file that belongs to another model fails inside the library's load_state_dict."""
    with torch_load_errors(path):
        try:
            yield
        except RuntimeError as e:
            if "size mismatch" in str(e) or "Missing key" in str(e) or "Unexpected key" in str(e):
                raise WeightsMismatchError(f"{path} does not fit {spec.id}: {' '.join(str(e).split())[:600]}") from None
            raise
