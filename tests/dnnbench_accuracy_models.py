"""For the accuracy tests: tiny ImageNet-headed networks (built by `python:dnnbench_accuracy_models:NAME`),
generated images of coloured shapes, and the same images written in every ImageNet layout dnnbench reads."""

import torch
from torch import nn


class ShapeNet(nn.Module):
    """4x4 average pool -> 2x2 patches -> 12 features -> global average -> 1000 ImageNet logits: enough
    to tell coloured shapes apart, small enough to train in a second on the CPU."""

    def __init__(self, width: int = 12):
        super().__init__()
        self.pool = nn.AvgPool2d(4)
        self.stem = nn.Conv2d(3, width, kernel_size=2, stride=2)
        self.head = nn.Linear(width, 1000)

    def forward(self, x):
        features = torch.relu(self.stem(self.pool(x))).mean(dim=(2, 3))
        return self.head(features)


def shape_net():
    return ShapeNet()


def wide_shape_net():
    """Another architecture: same keys, other shapes."""
    return ShapeNet(width=16)


class SegfaultingShapeNet(ShapeNet):
    """The shape net's keys and shapes (its weights load), but a forward pass that kills the process the way
    a broken native kernel does: a null-pointer read, SIGSEGV."""

    def forward(self, x):
        import ctypes

        ctypes.string_at(0)


def segfaulting_shape_net():
    return SegfaultingShapeNet()


# --- generated ImageNet-style images ---------------------------------------------------------------

# six real synsets, each drawn as one coloured shape on a noisy background
CLASSES = (
    ("n01440764", (220, 40, 40), "circle"),
    ("n01443537", (40, 170, 40), "square"),
    ("n01484850", (40, 60, 220), "triangle"),
    ("n01491361", (235, 205, 30), "circle"),
    ("n01494475", (200, 40, 200), "square"),
    ("n01496331", (30, 200, 210), "triangle"),
)


def draw(kind: int, rng, size=(80, 60)):
    """One image of class `kind` (index into CLASSES): a filled shape of random place and size."""
    import numpy as np
    from PIL import Image, ImageDraw

    width, height = size
    gray = rng.integers(70, 180, size=(height, width, 1))
    pixels = np.clip(gray + rng.integers(-20, 21, size=(height, width, 3)), 0, 255).astype("uint8")
    image = Image.fromarray(pixels, "RGB")
    _, colour, shape = CLASSES[kind]
    colour = tuple(int(np.clip(c + rng.integers(-20, 21), 0, 255)) for c in colour)
    r = int(rng.integers(height // 4, height * 2 // 5))
    cx, cy = int(rng.integers(r, width - r)), int(rng.integers(r, height - r))
    pen = ImageDraw.Draw(image)
    if shape == "circle":
        pen.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    elif shape == "square":
        pen.rectangle((cx - r, cy - r, cx + r, cy + r), fill=colour)
    else:
        pen.polygon(((cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)), fill=colour)
    return image


# --- the same images in every layout dnnbench reads --------------------------------------------------


def class_folder_files(root):
    """(relative path, synset) of every image of a class-folder tree, in sorted order."""
    return [(f"{d.name}/{f.name}", d.name) for d in sorted(root.iterdir()) if d.is_dir() for f in sorted(d.iterdir())]


def copy_as_devkit(class_root, dest, seed=0):
    """A flat folder of ILSVRC2012_val_XXXXXXXX.JPEG, the ground-truth file numbering classes in a
    made-up devkit order (a shuffle of the 1000 synsets), and that order as a text file."""
    import random
    import shutil

    from dnnbench.data.classes import imagenet_synsets

    order = list(imagenet_synsets())
    random.Random(seed).shuffle(order)
    devkit_id = {synset: i + 1 for i, synset in enumerate(order)}
    images = dest / "val_flat"
    images.mkdir(parents=True)
    lines = []
    for number, (path, synset) in enumerate(class_folder_files(class_root), 1):
        shutil.copyfile(class_root / path, images / f"ILSVRC2012_val_{number:08d}.JPEG")
        lines.append(str(devkit_id[synset]))
    ground_truth = dest / "ILSVRC2012_validation_ground_truth.txt"
    ground_truth.write_text("\n".join(lines) + "\n")
    synsets = dest / "devkit_synsets.txt"
    synsets.write_text("\n".join(order) + "\n")
    return images, ground_truth, synsets


def copy_as_kaggle(class_root, dest):
    import shutil

    images = dest / "ILSVRC" / "Data" / "CLS-LOC" / "val"
    images.mkdir(parents=True)
    rows = ["ImageId,PredictionString"]
    for number, (path, synset) in enumerate(class_folder_files(class_root), 1):
        stem = f"ILSVRC2012_val_{number:08d}"
        shutil.copyfile(class_root / path, images / f"{stem}.JPEG")
        rows.append(f"{stem},{synset} 1 2 30 40 {synset} 5 6 70 80")
    (dest / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")
    return dest


def write_path_label_csv(class_root, csv_path):
    """path,label rows for the class-folder images; labels alternate between synset and class index."""
    import os

    from dnnbench.data.classes import synset_to_index

    rows = ["path,label"]
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    for i, (path, synset) in enumerate(class_folder_files(class_root)):
        label = synset if i % 2 else str(synset_to_index()[synset])
        rows.append(f"{os.path.relpath(class_root / path, csv_path.parent)},{label}")
    csv_path.write_text("\n".join(rows) + "\n")
    return csv_path
