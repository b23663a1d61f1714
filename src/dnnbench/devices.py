"""The vocabulary of precisions and devices, in one place for every layer (measure, backends, env, run,
analysis, cli). PyTorch is imported only inside the functions that need it: the CLI's light commands
import this module and still start without torch.

Precisions are spelt fp32, bf16, fp16, int8 (what a model runs at); the peak FLOP/s probe also knows tf32
(fp32 matmuls on tensor cores). fp32, bf16 and fp16 are cast precisions (weights and input cast to a torch
dtype); int8 is a quantized precision: a deployment backend quantizes the fp32 model after calibration
(docs/BACKENDS.md, "Quantized int8"), and the model and its input stay fp32 on PyTorch's side.
Aliases (float32, half, bfloat16, ...) are accepted on input and never stored.
Devices are spelt cpu, cuda:N, mps: `cuda` alone means cuda:0.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterable, Iterator

from .errors import UsageError

if TYPE_CHECKING:
    import torch

PRECISIONS = ("fp32", "bf16", "fp16", "int8")  # what a model is run and stored at
CAST_PRECISIONS = ("fp32", "bf16", "fp16")  # those a model and its input are cast to (torch_dtype)
QUANTIZED_PRECISIONS = ("int8",)  # those a backend quantizes the fp32 model to, after calibration
DEFAULT_CALIBRATION_SAMPLES = 32  # calibration images a quantized precision gets unless told otherwise
PEAK_PRECISIONS = ("fp32", "tf32", "bf16", "fp16", "int8")  # what a device's peak is measured or specified at
PRECISION_BYTES = {"fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2, "int8": 1}
PRECISION_ALIASES = {"float32": "fp32", "float": "fp32", "float16": "fp16", "half": "fp16", "bfloat16": "bf16",
                     "qint8": "int8"}
_TORCH_DTYPE_NAMES = {"fp32": "float32", "tf32": "float32", "bf16": "bfloat16", "fp16": "float16"}
DEVICES_HELP = "cpu, cuda, cuda:N, mps, auto"


def canonical_precision(name: object) -> str:
    """`float16` -> `fp16`; an unknown name is returned as it is (lower-cased) for the caller to judge."""
    text = str(name).strip().lower()
    return PRECISION_ALIASES.get(text, text)


def parse_precision(name: object, allowed: Iterable[str] = PRECISIONS) -> str:
    """A precision name or alias -> its canonical name; refuses one outside `allowed`."""
    allowed = tuple(allowed)
    key = canonical_precision(name)
    if key not in allowed:
        raise UsageError(f"unknown precision {name!r}; precisions: {', '.join(allowed)}")
    return key


def parse_precisions(text: str | Iterable[str], allowed: Iterable[str] = PRECISIONS) -> tuple[str, ...]:
    """`fp32,bf16` or ["fp32", "bfloat16"] -> ("fp32", "bf16"), in the order given, without repeats."""
    items = text.split(",") if isinstance(text, str) else list(text)
    names = tuple(dict.fromkeys(parse_precision(p, allowed) for p in items if str(p).strip()))
    if not names:
        raise UsageError(f"no precision given; precisions: {', '.join(tuple(allowed))}")
    return names


def is_quantized(precision: str) -> bool:
    """int8: the model is quantized by a backend, not cast (see QUANTIZED_PRECISIONS)."""
    return canonical_precision(precision) in QUANTIZED_PRECISIONS


def storage_precision(precision: str) -> str:
    """The precision the PyTorch model and its input are kept at for `precision`: itself for a cast precision,
    fp32 for a quantized one (the backend quantizes the fp32 model; a quantized model takes fp32 input)."""
    return "fp32" if is_quantized(precision) else canonical_precision(precision)


def torch_dtype(precision: str) -> torch.dtype:
    """fp32 -> torch.float32 (tf32 too: the storage type), bf16 -> torch.bfloat16, fp16 -> torch.float16."""
    import torch

    if is_quantized(precision):
        raise UsageError(f"{precision} is a quantized precision: a deployment backend quantizes the fp32 model "
                         "(--backend openvino or onnxruntime), PyTorch does not cast to it; "
                         f"cast precisions: {', '.join(CAST_PRECISIONS)}")
    key = parse_precision(precision, _TORCH_DTYPE_NAMES)
    return getattr(torch, _TORCH_DTYPE_NAMES[key])


def precision_of(dtype: torch.dtype) -> str:
    """torch.float16 -> fp16."""
    for name in CAST_PRECISIONS:
        if torch_dtype(name) == dtype:
            return name
    raise UsageError(f"dtype {dtype} has no precision name; precisions: {', '.join(CAST_PRECISIONS)}")


def normalise_device(name: object) -> str:
    """How cells and peaks spell a device, without checking it exists: `cuda` -> `cuda:0`."""
    text = str(name).strip().lower()
    return "cuda:0" if text == "cuda" else text


def spell_device(name: object) -> str:
    """A device named for other machines (a cluster's nodes): checked for its spelling only."""
    text = normalise_device(name)
    if text in ("cpu", "mps") or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    if text == "auto":
        raise UsageError("device 'auto' means this machine's best device; for other machines name theirs: "
                         "cpu, cuda:N or mps")
    raise UsageError(f"unknown device {name!r}; devices: cpu, cuda, cuda:N, mps")


def resolve_device(name: object) -> str:
    """`auto` -> the best device here; `cuda` -> `cuda:0`. Refuses devices this machine does not have."""
    import torch

    text = str(name).strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return "cuda:0"
        return "mps" if torch.backends.mps.is_available() else "cpu"
    if text == "cpu":
        return "cpu"
    if text == "cuda" or (text.startswith("cuda:") and text[5:].isdigit()):
        if not torch.cuda.is_available():
            raise UsageError(f"device {text!r} asked for, but PyTorch sees no CUDA device on this machine "
                             f"(torch {torch.__version__}, built with CUDA {torch.version.cuda}); use --device cpu")
        index = int(text.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise UsageError(f"device {text!r}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                             f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
        return f"cuda:{index}"
    if text == "mps":
        if not torch.backends.mps.is_available():
            raise UsageError("device 'mps' asked for, but this machine has no Apple GPU available to PyTorch")
        return "mps"
    raise UsageError(f"unknown device {name!r}; devices: {DEVICES_HELP}")


def device_type(device: str) -> str:
    """`cuda:1` -> `cuda`."""
    return normalise_device(device).split(":")[0]


@contextmanager
def fp32_math(tf32: bool = False) -> Iterator[None]:
    """PyTorch's TF32 switches set for the block and restored after: fp32 is fp32 unless `tf32`. Needed because
    PyTorch's own default leaves cuDNN's convolutions in TF32 (torch.backends.cudnn.allow_tf32 is True)."""
    import torch

    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
