"""Comparing model names: normalisation and close-name suggestions (no zoo data, no library)."""

from __future__ import annotations

import difflib
import re


def normalize(name: str) -> str:
    """`ResNet-50`, `resnet_50` and `RESNET50` are one name; so are `SqueezeNet1.0` and `squeezenet1_0`."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


def close_names(name: str, candidates: list[str], n: int = 5) -> list[str]:
    """The closest candidates, compared after normalisation so that case and dashes don't matter."""
    by_key: dict[str, str] = {}
    for candidate in candidates:
        by_key.setdefault(normalize(candidate), candidate)
    keys = difflib.get_close_matches(normalize(name), list(by_key), n=n, cutoff=0.5)
    return [by_key[k] for k in keys]
