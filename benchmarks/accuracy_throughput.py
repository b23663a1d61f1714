"""Accuracy evaluation throughput: is decoding the bottleneck?

Generates an ImageNet-like folder (JPEG, 500x375, 10 class folders), then for each model compares

- the full pipeline: `evaluate_accuracy` (DataLoader workers decoding + preprocessing, model forward), and
- the model alone: the same number of images, already decoded and preprocessed, through the same model

as images/s and their ratio (target: the pipeline at >= 80% of the model alone, default workers).
Random weights are fine for throughput: each model's freshly initialised state dict is saved and
passed as `weights`, so the real loading path runs. Figures only; nothing is asserted.

    .venv/bin/python benchmarks/accuracy_throughput.py                       # ResNet-18, MobileNetV2, CPU
    .venv/bin/python benchmarks/accuracy_throughput.py --workers 0,1,2 --images 500
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from dnnbench import zoo
from dnnbench.data.classes import imagenet_synsets
from dnnbench.data.dataset import EvaluationDataset
from dnnbench.data.imagenet import open_imagenet
from dnnbench.data.preprocessing import input_plan
from dnnbench.data.transforms import build_transform
from dnnbench.measure.accuracy import default_workers, evaluate_accuracy


def photo_like(rng: np.random.Generator, width: int = 500, height: int = 375) -> Image.Image:
    """Smooth colour fields, a few shapes and sensor-like noise: JPEGs of a realistic size (~50-100 KB)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(0, 255, 3) + rng.uniform(-120, 120, 3) * (x / width)[..., None] + \
        rng.uniform(-120, 120, 3) * (y / height)[..., None]
    pixels = np.clip(base + rng.normal(0, 12, (height, width, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    pen = ImageDraw.Draw(image)
    for _ in range(6):
        x0, y0 = rng.integers(0, width), rng.integers(0, height)
        pen.ellipse((x0, y0, x0 + rng.integers(20, 200), y0 + rng.integers(20, 200)), fill=tuple(rng.integers(0, 255, 3)))
    return image


def make_folder(root: Path, images: int, classes: int = 10) -> Path:
    done = root / f"val-{images}"
    if done.is_dir() and sum(1 for _ in done.rglob("*.JPEG")) == images:
        return done
    rng = np.random.default_rng(0)
    synsets = imagenet_synsets()[::100][:classes]
    for i in range(images):
        folder = done / synsets[i % classes]
        folder.mkdir(parents=True, exist_ok=True)
        photo_like(rng).save(folder / f"ILSVRC2012_val_{i + 1:08d}.JPEG", quality=90)
    return done


def model_alone(spec, split, batch_size: int, images: int) -> float:
    """images/s of the forward pass on tensors decoded beforehand (same batch size, same threads)."""
    plan = input_plan(spec)
    dataset = EvaluationDataset(split, build_transform(plan.preprocessing))
    batches = [torch.stack([dataset[i][0] for i in range(start, min(start + batch_size, len(dataset)))])
               for start in range(0, min(len(dataset), 4 * batch_size), batch_size)]
    model = zoo.build_model(spec).eval()
    with torch.inference_mode():
        model(batches[0])  # warm-up: first-call allocations and kernel selection
        done, start = 0, time.perf_counter()
        while done < images:
            batch = batches[(done // batch_size) % len(batches)]
            model(batch)
            done += len(batch)
        return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="resnet18,mobilenetv2")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", default=None, help="comma-separated worker counts (default: dnnbench's default)")
    parser.add_argument("--model-only-images", type=int, default=384, help="images timed for the model alone")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "dnnbench-accuracy-bench")
    args = parser.parse_args()

    args.workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    folder = make_folder(args.workdir, args.images)
    split = open_imagenet(folder)
    sizes = [p.stat().st_size for p in folder.rglob("*.JPEG")]
    print(f"{len(split)} JPEGs, 500x375, mean {np.mean(sizes) / 1024:.0f} KB, in {folder} "
          f"(ready after {time.perf_counter() - started:.0f} s)")
    print(f"torch {torch.__version__}, {os.cpu_count()} cores, {torch.get_num_threads()} intra-op threads, "
          f"batch {args.batch_size}, device cpu")
    worker_counts = [int(w) for w in args.workers.split(",")] if args.workers else [default_workers("cpu")]

    print("\nmodel alone: measured just before and just after each pipeline run (the machine may be shared);"
          " ratio = pipeline / their mean")
    print(f"{'model':<14}{'workers':>8}{'pipeline img/s':>16}{'model alone img/s':>22}{'ratio':>8}")
    for name in args.models.split(","):
        spec = zoo.get(name)
        weights = args.workdir / f"{spec.id}-random.safetensors"
        if not weights.exists():
            from safetensors.torch import save_file

            save_file(zoo.build_model(spec).state_dict(), weights)
        for workers in worker_counts:
            before = model_alone(spec, split, args.batch_size, args.model_only_images)
            result = evaluate_accuracy(spec, split, weights=weights, workers=workers, batch_size=args.batch_size)
            after = model_alone(spec, split, args.batch_size, args.model_only_images)
            if result.status != "ok":
                sys.exit(f"{spec.id}: {result.error}")
            alone = f"{before:.1f} / {after:.1f}"
            ratio = result.images_per_s / ((before + after) / 2)
            print(f"{spec.id:<14}{workers:>8}{result.images_per_s:>16.1f}{alone:>22}{ratio:>8.0%}", flush=True)

if __name__ == "__main__":
    main()
