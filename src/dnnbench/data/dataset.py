"""The evaluation dataset: decode, transform, and survive files that cannot be decoded."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from .imagenet import ImageNetSplit
from .transforms import ImageTransform, load_rgb


class EvaluationDataset(Dataset):
    """Item i: (image tensor, label, i, error). A file that cannot be read or decoded gives a zero
    tensor and its error message instead of raising, so one bad JPEG does not end a 50,000-image run;
    the evaluation leaves it out and counts it."""

    def __init__(self, split: ImageNetSplit, transform: ImageTransform):
        # plain lists: cheap to hand to forked workers, no Path objects to pickle
        self.files = split.files
        self.labels = list(split.labels)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int, str]:
        try:
            image = self.transform(load_rgb(self.files[i]))
            return image, self.labels[i], i, ""
        except Exception as e:  # PIL raises many types for broken files; every one is "unreadable"
            reason = f"{type(e).__name__}: {e}".splitlines()[0][:200]
            return torch.zeros(self.transform.output_shape), self.labels[i], i, reason
