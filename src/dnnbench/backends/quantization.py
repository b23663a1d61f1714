"""Calibration images for quantized (int8) deployments, and where a CPU has int8 arithmetic.

Post-training quantization picks each tensor's int8 scale from the values it takes on calibration images.
Two sources (docs/BACKENDS.md, "Quantized int8"):

- the user's images, `--calibration-data DIR`, in any layout `dnnbench accuracy` reads (data.imagenet),
  decoded with the model's own evaluation preprocessing (data.preprocessing.input_plan); the first N of a
  deterministic subset spread over the classes;
- by default a synthetic set: structured images (colour gradients with rectangles and discs, normalised
  like ImageNet) drawn by `output_check.check_images` from their own seed, so that the output check's
  images, drawn from another seed, are held out: no check image was seen by the calibration.

The method, the number of samples and the source are recorded with every cell (`Backend.describe()`,
`quantization`).
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import torch

from ..devices import DEFAULT_CALIBRATION_SAMPLES
from .output_check import CHECK_SEED, check_images

if TYPE_CHECKING:
    from ..zoo import ModelSpec
    from ..zoo.spec import Preprocessing

CALIBRATION_SEED = CHECK_SEED + 1  # never the check images' seed: the check runs on held-out images
SYNTHETIC = "synthetic-structured"
DIRECTORY = "directory"
# CPU flags with int8 dot-product instructions (/proc/cpuinfo spelling, as env.fingerprint records them):
# x86 VNNI (AVX512-VNNI, AVX-VNNI) and AMX-INT8 tiles; Arm's dot product (asimddp) and int8 matrix multiply
INT8_CPU_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni", "asimddp", "i8mm")


@dataclass(frozen=True)
class CalibrationSet:
    """Images (N, 3, S, S), fp32, preprocessed as the model is fed, and how they were obtained."""

    images: torch.Tensor
    method: str  # SYNTHETIC | DIRECTORY
    source: str | None = None  # the directory, for DIRECTORY
    preprocessing: str | None = None  # how the directory's images were decoded

    @property
    def samples(self) -> int:
        return int(self.images.shape[0])

    def describe(self) -> dict[str, Any]:
        return {"calibration_method": self.method, "calibration_samples": self.samples,
                "calibration_source": self.source, "calibration_preprocessing": self.preprocessing,
                "calibration_digest": self.digest()}

    def digest(self) -> str:
        """sha256 of the images' bytes: the same calibration gives the same quantized model."""
        return hashlib.sha256(self.images.contiguous().numpy().tobytes()).hexdigest()[:16]

    def batches(self) -> Iterable[torch.Tensor]:
        """One image at a time, (1, 3, S, S): what both quantizers' calibration loops are fed."""
        for i in range(self.samples):
            yield self.images[i:i + 1]


def synthetic_calibration(input_size: int, samples: int = DEFAULT_CALIBRATION_SAMPLES) -> CalibrationSet:
    """The default calibration set: `samples` structured images from CALIBRATION_SEED (see the module)."""
    _check_samples(samples)
    return CalibrationSet(check_images(input_size, samples, seed=CALIBRATION_SEED), SYNTHETIC)


def directory_calibration(directory: str | Path, spec: ModelSpec, input_size: int | None = None,
                          samples: int = DEFAULT_CALIBRATION_SAMPLES,
                          preprocessing: Preprocessing | None = None) -> CalibrationSet:
    """`samples` images of `directory` (any layout data.imagenet reads), with `spec`'s own evaluation
    preprocessing (or `preprocessing`: an accuracy run's) at `input_size` (resize scaled with it).
    Undecodable images are refused with their path."""
    from ..data.imagenet import open_imagenet
    from ..data.preprocessing import input_plan
    from ..data.transforms import build_transform, load_rgb
    from ..errors import UsageError

    _check_samples(samples)
    split = open_imagenet(directory)
    chosen = split.subset(min(samples, len(split)))
    preprocessing = preprocessing or input_plan(spec, "weights").preprocessing
    if input_size is not None and input_size != preprocessing.input_size:
        resize = math.floor(input_size * preprocessing.resize_size / preprocessing.input_size)
        preprocessing = replace(preprocessing, input_size=input_size, resize_size=resize)
    transform = build_transform(preprocessing)
    images = []
    for i in range(len(chosen)):
        try:
            images.append(transform(load_rgb(chosen.file(i))))
        except Exception as exc:  # noqa: BLE001 - PIL raises many kinds; every one means "not an image"
            raise UsageError(f"--calibration-data: {chosen.file(i)} cannot be decoded "
                             f"({type(exc).__name__}: {exc}); remove it or give another folder") from None
    return CalibrationSet(torch.stack(images).float().contiguous(), DIRECTORY, str(Path(directory).resolve()),
                          preprocessing.describe())


def calibration_set(directory: str | Path | None, spec: ModelSpec, input_size: int,
                    samples: int = DEFAULT_CALIBRATION_SAMPLES,
                    preprocessing: Preprocessing | None = None) -> CalibrationSet:
    """The user's images when a directory is given, else the synthetic set."""
    if directory is None:
        return synthetic_calibration(input_size, samples)
    return directory_calibration(directory, spec, input_size, samples, preprocessing)


def int8_cpu_reason(cpu_flags: Iterable[str] | None) -> str | None:
    """Why this CPU has no int8 arithmetic worth deploying (no VNNI, AMX-INT8 or Arm dot product), or None."""
    flags = set(cpu_flags or ())
    if flags & set(INT8_CPU_FLAGS):
        return None
    return ("this CPU has no int8 dot-product instructions (AVX512-VNNI, AVX-VNNI, AMX-INT8, Arm dot product): "
            "int8 would run on emulated paths that saturate or are no faster than fp32")


def _check_samples(samples: int) -> None:
    from ..errors import UsageError

    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise UsageError(f"--calibration-samples must be an integer >= 1, not {samples!r}")


@functools.lru_cache(maxsize=1)
def cpu_flags() -> tuple[str, ...]:
    """This machine's CPU flags that matter here, as env.fingerprint reads them from /proc/cpuinfo (read once)."""
    from ..env.fingerprint import collect_machine

    return collect_machine().cpu_flags or ()
