"""Cadene's pretrainedmodels (`pretrainedmodels:NAME`): the Caffe and Torch7 ports the 2018 study used."""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from collections.abc import Mapping
from typing import Any

from ...errors import UnknownModelError, UsageError
from ..spec import ModelSpec, Preprocessing, WeightsSpec
from .base import ModelSource, PublishedWeights, matching

TRANSFORM_IMAGE_SCALE = 0.875  # pretrainedmodels' TransformImage(scale=0.875): resize to floor(size / 0.875)


def _library() -> Any:
    # pretrainedmodels prints and warns on import with current torchvision; keep the user's terminal clean
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        import pretrainedmodels
    return pretrainedmodels


def pretrainedmodels_settings(name: str) -> dict[str, Any]:
    """pretrainedmodels' `pretrained_settings` for `key/dataset` (e.g. `bninception/imagenet`)."""
    key, _, dataset = name.partition("/")
    return _library().pretrained_settings[key][dataset or "imagenet"]


class PretrainedModelsSource(ModelSource):
    prefix = "pretrainedmodels"
    description = "pretrainedmodels' models"

    def list_names(self, pattern: str = "*") -> list[str]:
        return [self.full_name(n) for n in matching(_library().model_names, pattern)]

    def resolve(self, name: str) -> ModelSpec:
        library = _library()
        if name not in library.model_names:
            from ..names import close_names

            suggestions = [self.full_name(n) for n in close_names(name, list(library.model_names))]
            raise UnknownModelError(self.full_name(name), suggestions, self.description)
        weights = WeightsSpec(ref=None, same_as_2018=None, provenance="pretrainedmodels has no ImageNet weights for it")
        preprocessing, input_size = None, 224
        if "imagenet" in library.pretrained_settings.get(name, {}):
            published = self.weights(f"{name}/imagenet")
            preprocessing, input_size = published.preprocessing, published.preprocessing.input_size
            weights = WeightsSpec(ref=published.ref, same_as_2018=None, provenance="pretrainedmodels imagenet settings")
        family = getattr(library, name).__module__.rsplit(".", 1)[-1]
        return ModelSpec(id=self.full_name(name), builder=self.full_name(name), input_size=input_size, family=family,
                         preprocessing=preprocessing, weights=weights)

    def construct(self, name: str, kwargs: dict[str, Any]) -> Any:
        return getattr(_library(), name)(num_classes=1000, pretrained=None, **kwargs)

    def weights(self, tag: str) -> PublishedWeights:
        try:
            settings = pretrainedmodels_settings(tag)
        except KeyError:
            raise UsageError(f"pretrainedmodels has no pretrained settings named {tag!r}") from None
        size = max(settings["input_size"])
        preprocessing = Preprocessing(
            input_size=size, resize_size=math.floor(size / TRANSFORM_IMAGE_SCALE), interpolation="bilinear",
            mean=tuple(float(m) for m in settings["mean"]), std=tuple(float(s) for s in settings["std"]),
            color_order=settings["input_space"], value_range=float(max(settings["input_range"])),
        )
        return PublishedWeights(self.full_name(tag), preprocessing,
                                f"pretrainedmodels pretrained_settings[{tag.split('/')[0]!r}]")

    def load_weights(self, spec: ModelSpec) -> Any:
        import torch

        from ..checkpoints import (
            LoadedModel,
            WeightsIdentity,
            ensure_in_hub_cache,
            file_sha256,
            fit_state_dict,
            torch_load_errors,
        )

        settings = pretrainedmodels_settings(spec.weights.ref.split(":", 1)[1])
        # pretrainedmodels calls model_zoo.load_url(url): torch.hub's cache, no hash check
        path = ensure_in_hub_cache(spec, settings["url"], check_hash=False)
        with torch_load_errors(path):
            try:
                state = torch.hub.load_state_dict_from_url(settings["url"], map_location="cpu", progress=False,
                                                           weights_only=True)
            except UnicodeDecodeError:  # some of these files were pickled by Python 2
                state = torch.load(path, map_location="cpu", weights_only=True, encoding="latin1")
        model = self.build(spec.builder_name, "cpu", **dict(spec.builder_kwargs))
        fit_state_dict(model, dict(state), str(path))
        for attribute in ("input_space", "input_size", "input_range", "mean", "std"):  # as pretrainedmodels sets them
            setattr(model, attribute, settings[attribute])
        return LoadedModel(model, WeightsIdentity("pretrainedmodels", spec.weights.ref, str(path), file_sha256(path),
                                                  settings["url"]))

    def seed_weights(self, name: str, row: Mapping[str, str]) -> WeightsSpec:
        return WeightsSpec(ref=self.full_name(f"{row['pretrainedmodels_key']}/imagenet"), same_as_2018=True,
                           provenance=f"2018: {row['weights_2018']}")


SOURCE = PretrainedModelsSource()
