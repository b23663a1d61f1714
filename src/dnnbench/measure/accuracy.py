"""Top-1 / top-5 accuracy on ImageNet-1k validation, every model fed as its weights expect.

    >>> from dnnbench.measure.accuracy import evaluate_accuracy
    >>> r = evaluate_accuracy("resnet50", "/data/imagenet/val", limit=5000)   # doctest: +SKIP
    >>> r.top1, r.top1_ci, r.images_per_s                                     # doctest: +SKIP

`evaluate_accuracy` measures one model and returns an `AccuracyResult`; it never touches the results
store. Sweeps over several models, one isolated worker and one stored cell per model (metric
"accuracy"), are `dnnbench.run.accuracy.accuracy_sweep`. The confidence intervals are 95% Wilson score
intervals of the binomial proportion.
"""

from __future__ import annotations

import csv
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any, Callable, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..backends import BACKENDS, BackendUnavailable, PrecisionUnsupported, as_tensor, make_backend
from ..backends.output_check import check_input
from ..backends.quantization import calibration_set
from ..data.classes import NUM_CLASSES, imagenet_synsets
from ..data.dataset import EvaluationDataset
from ..data.imagenet import ImageNetSplit, open_imagenet
from ..data.preprocessing import InputPlan, input_plan
from ..data.transforms import build_transform
from ..devices import DEFAULT_CALIBRATION_SAMPLES, PRECISIONS, fp32_math, is_quantized, storage_precision, torch_dtype
from ..errors import DnnbenchError, UsageError
from ..zoo import ModelSpec
from ..zoo.weights import WeightsIdentity, WeightsUnavailableError, load_model, weights_key

METRIC = "accuracy"
CI_METHOD = "wilson"
CI_LEVEL = 0.95
TOP_K = 5
CORRUPT_LISTED = 20  # corrupt files named in the stored result; all of them are counted


# --- statistics ----------------------------------------------------------------------------------


def wilson_interval(successes: int, n: int, level: float = CI_LEVEL) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (fractions, not percent). Unlike the normal
    approximation it stays inside [0, 1] and keeps its coverage near 0% and 100% accuracy."""
    if n <= 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(0.5 + level / 2)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


# --- results -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassAccuracy:
    label: int
    synset: str
    n: int
    top1_correct: int
    top5_correct: int

    @property
    def top1(self) -> float:
        return 100.0 * self.top1_correct / self.n if self.n else float("nan")


@dataclass
class AccuracyResult:
    """One model's accuracy (percent), or why there is none (`status` "unavailable" or "error")."""

    model: str
    status: str  # "ok" | "unavailable" | "error"
    config: dict[str, Any]  # the store's cell identity: weights, preprocessing, dataset, limit, device, dtype
    top1: float | None = None
    top5: float | None = None
    n: int = 0  # images evaluated (decodable ones)
    top1_correct: int = 0
    top5_correct: int = 0
    top1_ci: tuple[float, float] | None = None  # percent, 95% Wilson
    top5_ci: tuple[float, float] | None = None
    per_class: tuple[ClassAccuracy, ...] = ()
    corrupt: int = 0
    corrupt_files: tuple[str, ...] = ()
    classes_seen: int = 0
    images_per_s: float | None = None
    elapsed_s: float = 0.0
    weights: WeightsIdentity | None = None
    plan: InputPlan | None = None
    warnings: tuple[str, ...] = ()
    error: str | None = None
    started_at: float = field(default_factory=time.time)
    finished_at: float = field(default_factory=time.time)

    def values(self) -> dict[str, Any]:
        values: dict[str, Any] = {"preprocessing": self.plan.to_dict() if self.plan else None,
                                  "weights": self.weights.to_dict() if self.weights else None}
        if self.status != "ok":
            return values
        values.update({
            "top1": self.top1, "top5": self.top5, "n": self.n,
            "top1_correct": self.top1_correct, "top5_correct": self.top5_correct,
            "top1_ci": list(self.top1_ci or ()), "top5_ci": list(self.top5_ci or ()),
            "ci_method": CI_METHOD, "ci_level": CI_LEVEL,
            # a list, not a mapping: exports flatten mappings into columns, 1000 of them here
            "per_class": [[c.synset, c.n, c.top1_correct, c.top5_correct] for c in self.per_class],
            "corrupt": self.corrupt, "corrupt_files": list(self.corrupt_files),
            "classes_seen": self.classes_seen, "images_per_s": self.images_per_s, "elapsed_s": self.elapsed_s,
            "warnings": list(self.warnings),
        })
        return values


class AccuracyProgress(Protocol):
    def model_started(self, model: str, images: int) -> None: ...
    def batch_done(self, images: int, evaluated: int, top1_correct: int) -> None: ...
    def model_done(self, result: AccuracyResult) -> None: ...


class NoProgress:
    def model_started(self, model: str, images: int) -> None: ...
    def batch_done(self, images: int, evaluated: int, top1_correct: int) -> None: ...
    def model_done(self, result: AccuracyResult) -> None: ...


# --- settings ------------------------------------------------------------------------------------


def default_workers(device: str) -> int:
    """Decoding workers: on a GPU as many as there are cores (up to 8), so decoding keeps up; on the CPU
    the model needs the cores too, so half of them."""
    cores = os.cpu_count() or 1
    return min(8, cores) if device.startswith("cuda") else max(1, cores // 2)


@dataclass(frozen=True)
class EvalSettings:
    """How the images are fed: checked when made; `workers` None becomes default_workers(device). `device`
    is a concrete torch device name (the run layer resolves "auto")."""

    paper_preprocessing: bool = False
    limit: int | None = None
    device: str = "cpu"
    dtype: str = "fp32"
    batch_size: int = 64
    workers: int | None = None
    # the deployment evaluated: eager PyTorch, or a backend (dnnbench.backends) run through the very call that
    # is timed (its `bind`); int8 needs a quantizing backend and is calibrated on `calibration_data` (a folder,
    # any layout open_imagenet reads) or the synthetic set
    backend: str = "eager"
    calibration_data: str | None = None
    calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise UsageError(f"--batch-size must be at least 1, not {self.batch_size}")
        if self.workers is not None and self.workers < 0:
            raise UsageError(f"--workers must be 0 or more, not {self.workers}")
        if self.limit is not None and self.limit < 1:
            raise UsageError(f"--limit must be at least 1, not {self.limit}")
        if self.dtype not in PRECISIONS:
            raise UsageError(f"--dtype {self.dtype!r} is not one of {', '.join(PRECISIONS)}")
        if self.backend not in BACKENDS:
            raise UsageError(f"--backend {self.backend!r} is not one of {', '.join(BACKENDS)}")
        if is_quantized(self.dtype) and self.backend == "eager":
            raise UsageError(f"--dtype {self.dtype} is a quantized precision: give the backend that quantizes it, "
                             "--backend openvino or --backend onnxruntime")
        if self.workers is None:
            object.__setattr__(self, "workers", default_workers(self.device))

    @property
    def mode(self) -> str:
        return "paper" if self.paper_preprocessing else "weights"

    @property
    def torch_dtype(self) -> torch.dtype:
        return torch_dtype(storage_precision(self.dtype))


# --- predictions file ----------------------------------------------------------------------------


class PredictionsWriter:
    """One CSV row per model and image: label, top-5 class indices (best first), hits, decode error."""

    HEADER = ("model", "path", "label", "synset", "top1", "top5", "top1_correct", "top5_correct", "error")

    def __init__(self, path: str | Path, append: bool = False):
        """A new file with its header, or (`append`) more rows for one started before (one worker per model)."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a" if append else "w", newline="", encoding="utf-8")
        self._csv = csv.writer(self._file)
        if not append:
            self._csv.writerow(self.HEADER)

    def write(self, model: str, split: ImageNetSplit, top5: np.ndarray, errors: dict[int, str]) -> None:
        synsets = imagenet_synsets()
        for i, (path, label) in enumerate(zip(split.paths, split.labels)):
            if i in errors:
                self._csv.writerow((model, path, label, synsets[label], "", "", "", "", errors[i]))
                continue
            predicted = [int(c) for c in top5[i] if c >= 0]
            self._csv.writerow((model, path, label, synsets[label], predicted[0], " ".join(map(str, predicted)),
                                int(predicted[0] == label), int(label in predicted), ""))
        self._file.flush()

    def close(self) -> None:
        self._file.close()


# --- evaluation ----------------------------------------------------------------------------------


def _logits(output: Any) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    for attribute in ("logits",):  # named-tuple outputs (torchvision's GoogLeNetOutputs in training mode)
        if hasattr(output, attribute):
            return getattr(output, attribute)
    return output[0]


def _eager_forward(model: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda batch: _logits(model(batch))


def deployed_forward(spec: ModelSpec, model: torch.nn.Module, plan: InputPlan,
                     settings: EvalSettings) -> Callable[[torch.Tensor], torch.Tensor]:
    """`settings.backend` at `settings.dtype`, prepared from `model` as a timing worker prepares it (calibrated
    first for int8), called through `bind` — the call that is timed. Every batch is padded to the batch size
    (the padding rows dropped from the logits), so that a static-shape runtime compiles one shape."""
    device = torch.device(settings.device)
    backend_type = BACKENDS[settings.backend]
    reason = backend_type.unavailable_reason(device)
    if reason:
        raise BackendUnavailable(reason)
    backend = make_backend(settings.backend, device, settings.dtype, None)
    reason = backend.unsupported_reason()
    if reason:
        raise PrecisionUnsupported(reason)
    size = plan.preprocessing.input_size
    if is_quantized(settings.dtype):
        backend.calibrate_with(calibration_set(settings.calibration_data, spec, size, settings.calibration_samples,
                                               plan.preprocessing))
    backend.prepare(model, check_input(size, device, batch_size=1), key=f"{spec.id}-{size}")
    batch_size = settings.batch_size

    def forward(batch: torch.Tensor) -> torch.Tensor:
        n = int(batch.shape[0])
        if n < batch_size:
            batch = torch.cat([batch, batch.new_zeros((batch_size - n, *batch.shape[1:]))])
        return as_tensor(backend.bind(batch)())[:n]
    return forward


def _predict(forward: Callable[[torch.Tensor], torch.Tensor], split: ImageNetSplit, plan: InputPlan,
             settings: EvalSettings, progress: AccuracyProgress) -> tuple[np.ndarray, dict[int, str], float]:
    """Top-5 class indices per image (-1 rows for undecodable ones), decode errors, wall seconds. `forward`:
    a batch on the device, in the settings' dtype -> its logits."""
    dataset = EvaluationDataset(split, build_transform(plan.preprocessing))
    on_cuda = settings.device.startswith("cuda")
    workers = settings.workers or 0
    loader = DataLoader(dataset, batch_size=settings.batch_size, shuffle=False, num_workers=workers,
                        pin_memory=on_cuda, prefetch_factor=4 if workers else None)
    labels = torch.tensor(split.labels)
    highest_label = int(labels.max())
    top5 = np.full((len(split), TOP_K), -1, dtype=np.int64)
    errors: dict[int, str] = {}
    done = evaluated = correct = 0
    start = time.perf_counter()
    with torch.inference_mode():
        for images, _, indices, problems in loader:
            good = torch.tensor([not p for p in problems])
            errors.update({int(i): p for i, p in zip(indices, problems) if p})
            if good.any():
                batch = images if good.all() else images[good]
                # pinned host memory + non_blocking: the copy overlaps with the next batch's decoding
                batch = batch.to(settings.device, non_blocking=True).to(settings.torch_dtype)
                logits = forward(batch).float()
                if logits.shape[1] <= highest_label:
                    raise UsageError(f"the model outputs {logits.shape[1]} classes, but the labels go up to "
                                     f"{highest_label}: it is not an ImageNet-1k classifier")
                predicted = logits.topk(min(TOP_K, logits.shape[1]), dim=1).indices.cpu()
                rows = indices[good]
                top5[rows.numpy(), :predicted.shape[1]] = predicted.numpy()
                evaluated += len(rows)
                correct += int((predicted[:, 0] == labels[rows]).sum())
            done += len(indices)
            progress.batch_done(done, evaluated, correct)
    if on_cuda:
        torch.cuda.synchronize(settings.device)
    return top5, errors, time.perf_counter() - start


def _tally(result: AccuracyResult, split: ImageNetSplit, top5: np.ndarray, errors: dict[int, str]) -> None:
    labels = np.asarray(split.labels)
    ok = top5[:, 0] >= 0
    hit1 = ok & (top5[:, 0] == labels)
    hit5 = ok & (top5 == labels[:, None]).any(axis=1)
    n = int(ok.sum())
    result.n, result.top1_correct, result.top5_correct = n, int(hit1.sum()), int(hit5.sum())
    result.top1, result.top5 = 100.0 * result.top1_correct / n, 100.0 * result.top5_correct / n
    result.top1_ci = tuple(100.0 * v for v in wilson_interval(result.top1_correct, n))  # type: ignore[assignment]
    result.top5_ci = tuple(100.0 * v for v in wilson_interval(result.top5_correct, n))  # type: ignore[assignment]
    synsets = imagenet_synsets()
    counts = np.bincount(labels[ok], minlength=NUM_CLASSES)
    correct1 = np.bincount(labels[hit1], minlength=NUM_CLASSES)
    correct5 = np.bincount(labels[hit5], minlength=NUM_CLASSES)
    result.per_class = tuple(ClassAccuracy(int(c), synsets[c], int(counts[c]), int(correct1[c]), int(correct5[c]))
                             for c in np.flatnonzero(counts))
    result.classes_seen = len(result.per_class)
    result.corrupt = len(errors)
    result.corrupt_files = tuple(f"{split.paths[i]}: {errors[i]}" for i in sorted(errors)[:CORRUPT_LISTED])


def _warnings(result: AccuracyResult, split: ImageNetSplit, full: ImageNetSplit, settings: EvalSettings) -> tuple[str, ...]:
    said = []
    if result.classes_seen < NUM_CLASSES:
        why = f" (--limit {settings.limit})" if len(split) < len(full) else ""
        said.append(f"only {result.classes_seen} of the {NUM_CLASSES} ImageNet classes were evaluated{why}: "
                    "top-1/top-5 are not comparable with full-validation figures")
    if result.corrupt:
        said.append(f"{result.corrupt} image(s) could not be read or decoded and were left out "
                    f"(first: {result.corrupt_files[0]})")
    if full.missing_images:
        said.append(f"{full.missing_images} image(s) listed in {full.label_file} are not in {full.root}")
    if result.plan and result.plan.note:
        said.append(result.plan.note)
    return tuple(said)


def _resolve_spec(model: str | ModelSpec) -> ModelSpec:
    from .. import zoo

    return model if isinstance(model, ModelSpec) else zoo.get(model)


def cell_config(spec: ModelSpec, full: ImageNetSplit, settings: EvalSettings, weights: str | Path | None) -> dict:
    """What identifies one model's accuracy (the store's cell key): weights, preprocessing, dataset, limit,
    device, dtype. Batch size and decoding workers change how fast, not what is measured."""
    config = {"weights": weights_key(spec, weights), "preprocessing": settings.mode,
              "dataset": full.fingerprint.to_dict(), "limit": settings.limit, "device": settings.device,
              "dtype": settings.dtype}
    if settings.backend != "eager":  # eager cells keep the key they always had
        config["backend"] = settings.backend
    if is_quantized(settings.dtype):  # as a timed int8 cell's key (run.plan.cell_config): the calibration
        from ..backends.quantization import DIRECTORY, SYNTHETIC

        config["calibration"] = {"method": DIRECTORY if settings.calibration_data else SYNTHETIC,
                                 "source": settings.calibration_data, "samples": settings.calibration_samples}
    return config


def evaluate(spec: ModelSpec, full: ImageNetSplit, settings: EvalSettings, weights: str | Path | None = None,
             predictions: PredictionsWriter | None = None, progress: AccuracyProgress | None = None,
             config: Mapping[str, Any] | None = None) -> AccuracyResult:
    """One model on `full` (its `settings.limit` subset); failures of the model or its weights come back as a
    result ("unavailable", "error"). `config`: the cell's identity when the caller computed it already."""
    progress = progress or NoProgress()
    split = full.subset(settings.limit)
    config = dict(config) if config is not None else cell_config(spec, full, settings, weights)
    result = AccuracyResult(spec.id, "error", config)
    progress.model_started(spec.id, len(split))
    try:
        result.plan = input_plan(spec, settings.mode, library_weights=weights is None)
        loaded = load_model(spec, weights)
        result.weights = loaded.weights
        model = loaded.model
        if result.plan.transform_input is not None:
            model.transform_input = result.plan.transform_input
        model = model.to(device=settings.device, dtype=settings.torch_dtype)
        if settings.backend == "eager":
            forward = _eager_forward(model)
        else:  # the deployment itself, prepared and called as the timing worker does
            forward = deployed_forward(spec, model, result.plan, settings)
            model = None
        with fp32_math(tf32=False):  # fp32 accuracy is fp32 accuracy: cuDNN's TF32 default is switched off
            top5, errors, seconds = _predict(forward, split, result.plan, settings, progress)
        del model, loaded, forward
        if len(errors) == len(split):
            raise DnnbenchError(f"none of the {len(split)} images could be decoded (first: "
                                f"{split.paths[min(errors)]}: {errors[min(errors)]})")
        _tally(result, split, top5, errors)
        result.images_per_s = len(split) / seconds if seconds > 0 else None
        result.elapsed_s = seconds
        result.warnings = _warnings(result, split, full, settings)
        result.status = "ok"
        if predictions is not None:
            predictions.write(spec.id, split, top5, errors)
    except WeightsUnavailableError as e:
        result.status, result.error = "unavailable", str(e)
    except (BackendUnavailable, PrecisionUnsupported) as e:  # the backend or its precision does not run here
        result.status, result.error = "unavailable", f"{settings.backend} at {settings.dtype}: {e}"
    except DnnbenchError as e:
        result.error = str(e)
    except Exception as e:  # a model that crashes must not end the sweep; the message is kept in the store
        result.error = f"{type(e).__name__}: {e}"
    finally:
        if settings.device.startswith("cuda"):
            torch.cuda.empty_cache()
    result.finished_at = time.time()
    progress.model_done(result)
    return result


def evaluate_accuracy(model: str | ModelSpec, data: str | Path | ImageNetSplit, *, weights: str | Path | None = None,
                      paper_preprocessing: bool = False, limit: int | None = None, device: str = "cpu",
                      dtype: str = "fp32", batch_size: int = 64, workers: int | None = None,
                      labels: str | Path | None = None, synsets: str | Path | None = None,
                      save_predictions: str | Path | None = None,
                      progress: AccuracyProgress | None = None, backend: str = "eager",
                      calibration_data: str | Path | None = None,
                      calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES) -> AccuracyResult:
    """Top-1/top-5 of one model on an ImageNet validation set (see data.imagenet for the layouts), run by
    eager PyTorch or by a deployment `backend` (int8: calibrated on `calibration_data`, else synthetic images).

    Problems with the data raise (UsageError); problems with the model or its weights come back as a
    result with status "unavailable" or "error" and the message in `error`.
    """
    settings = EvalSettings(paper_preprocessing=paper_preprocessing, limit=limit, device=device, dtype=dtype,
                            batch_size=batch_size, workers=workers, backend=backend,
                            calibration_data=str(Path(calibration_data).resolve()) if calibration_data else None,
                            calibration_samples=calibration_samples)
    split = data if isinstance(data, ImageNetSplit) else open_imagenet(data, labels, synsets)
    spec = _resolve_spec(model)
    writer = PredictionsWriter(save_predictions) if save_predictions else None
    try:
        return evaluate(spec, split, settings, weights, writer, progress)
    finally:
        if writer:
            writer.close()
