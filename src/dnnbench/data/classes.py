"""The 1000 ImageNet-1k classes: WordNet synset ids in the standard order (index 0 = n01440764).

The list is the one every ImageNet classifier in torchvision, timm and pretrainedmodels is trained
with: the synsets sorted alphabetically. It ships as `imagenet_synsets.txt` (a copy of timm's
`timm/data/_info/imagenet_synsets.txt`; a test checks they are equal).
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

from ..errors import UsageError

NUM_CLASSES = 1000
SYNSET_PATTERN = re.compile(r"n\d{8}")


class LabelError(UsageError):
    """A label that is not one of the 1000 ImageNet classes."""


@lru_cache(maxsize=1)
def imagenet_synsets() -> tuple[str, ...]:
    """The 1000 synsets; position = class index."""
    text = resources.files("dnnbench.data").joinpath("imagenet_synsets.txt").read_text(encoding="ascii")
    synsets = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(synsets) != NUM_CLASSES:
        raise RuntimeError(f"dnnbench's imagenet_synsets.txt has {len(synsets)} lines, not {NUM_CLASSES}")
    return synsets


@lru_cache(maxsize=1)
def synset_to_index() -> dict[str, int]:
    return {synset: index for index, synset in enumerate(imagenet_synsets())}


def is_synset(name: str) -> bool:
    return SYNSET_PATTERN.fullmatch(name) is not None


def parse_label(value: str, where: str) -> int:
    """A class index from a synset (`n01440764`) or an index `0`..`999`; LabelError names `where`."""
    text = value.strip()
    if is_synset(text):
        try:
            return synset_to_index()[text]
        except KeyError:
            raise LabelError(f"{where}: {text} is a WordNet synset but not one of the 1000 ImageNet-1k classes") from None
    try:
        index = int(text)
    except ValueError:
        raise LabelError(f"{where}: label {text!r} is neither an ImageNet synset (like n01440764) "
                         f"nor a class index 0..{NUM_CLASSES - 1}") from None
    if not 0 <= index < NUM_CLASSES:
        raise LabelError(f"{where}: class index {index} is out of range 0..{NUM_CLASSES - 1}")
    return index
