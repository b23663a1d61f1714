"""ONNX export, cached per model + weights + input size + opset + precision.

Exported with the TorchScript-based exporter (`dynamo=False`: the dynamo exporter needs onnxscript) and a
dynamic batch axis, so one file serves every batch size. The cache key includes a digest of the weights,
so a file is never reused for other weights (a randomly initialised model differs at every build).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import torch

DEFAULT_OPSET = 17
EXPORT_INPUT = "input"  # the graph input's name


def cache_dir() -> Path:
    """$DNNBENCH_CACHE, else $XDG_CACHE_HOME/dnnbench, else ~/.cache/dnnbench."""
    if os.environ.get("DNNBENCH_CACHE"):
        return Path(os.environ["DNNBENCH_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dnnbench"


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 over every parameter's and buffer's name, shape, dtype and bytes (ResNet-50: ~0.1 s)."""
    digest = hashlib.sha256()
    for name, tensor in list(model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous().reshape(-1)  # 0-d tensors cannot be viewed as bytes
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()[:16]


def export_onnx(model: torch.nn.Module, example: torch.Tensor, key: str, opset: int = DEFAULT_OPSET) -> tuple[Path, bool]:
    """The ONNX file of `model` for inputs shaped like `example` (any batch size): (path, reused from cache).

    Raises the exporter's own error (unsupported operator, ...) for the caller to record.
    """
    safe_key = "".join(c if c.isalnum() or c in "-_." else "_" for c in key)
    path = cache_dir() / "onnx" / f"{safe_key}-{weights_digest(model)}-op{opset}-{str(example.dtype).split('.')[-1]}.onnx"
    if path.exists():
        return path, True
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.partial")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice, once per export
        with torch.no_grad():
            torch.onnx.export(model, (example,), str(partial), dynamo=False, opset_version=opset,
                              input_names=[EXPORT_INPUT], output_names=["logits"],
                              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    partial.replace(path)  # atomic: a concurrent worker never reads half a file
    return path, False
