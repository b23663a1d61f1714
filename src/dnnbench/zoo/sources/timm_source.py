"""timm's models (`timm:NAME` or `timm:NAME.TAG`), fed as their pretrained configuration says."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from ...errors import UnknownModelError, UsageError
from ..spec import ModelSpec, Preprocessing, ReportedAccuracy, WeightsSpec
from ..timm_results import timm_reported
from .base import ModelSource, PublishedWeights


@lru_cache(maxsize=1)
def _architectures() -> tuple[str, ...]:
    import timm

    return tuple(timm.list_models())


def _config(tag: str) -> dict[str, Any] | None:
    """timm's data config for the pretrained tag (as `timm.data.resolve_data_config` gives it), or None."""
    from timm.data import resolve_data_config
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(tag)
    return None if cfg is None else resolve_data_config({}, pretrained_cfg=cfg.to_dict())


def _preprocessing(config: dict[str, Any]) -> Preprocessing:
    """timm's eval transform (`transforms_imagenet_eval`): resize the shorter side to floor(size / crop_pct),
    then centre-crop; a crop_pct above 1 resizes below the crop and the crop pads, as torchvision's does."""
    size = int(config["input_size"][-1])
    return Preprocessing(
        input_size=size, resize_size=math.floor(size / config["crop_pct"]), interpolation=config["interpolation"],
        mean=tuple(config["mean"]), std=tuple(config["std"]),  # type: ignore[arg-type]
    )


class TimmSource(ModelSource):
    prefix = "timm"
    description = "timm's models"

    def list_names(self, pattern: str = "*") -> list[str]:
        import timm

        # a pattern with a dot selects pretrained tags (`convnext_tiny.*`), without one architectures
        tagged = "." in pattern
        return [self.full_name(n) for n in timm.list_models(pattern.lower(), include_tags=tagged)]

    def resolve(self, name: str) -> ModelSpec:
        import timm
        from timm.models import get_pretrained_cfg

        arch, _, tag = name.partition(".")
        if not timm.is_model(arch):
            from ..names import close_names

            suggestions = [self.full_name(n) for n in close_names(arch, list(_architectures()))]
            raise UnknownModelError(self.full_name(name), suggestions, "timm")
        cfg = get_pretrained_cfg(name) if tag else get_pretrained_cfg(arch)
        preprocessing, input_size = None, 224
        weights = WeightsSpec(ref=None, same_as_2018=None, provenance="timm has no pretrained weights for this name")
        if cfg is not None:
            full_tag = f"{arch}.{cfg.tag}" if cfg.tag else arch
            preprocessing = _preprocessing(_config(full_tag) or {})
            input_size = preprocessing.input_size
            weights = WeightsSpec(ref=self.full_name(full_tag), same_as_2018=None, provenance="timm pretrained config",
                                  reported=timm_reported(full_tag))
        family = timm.models.model_entrypoint(arch).__module__.rsplit(".", 1)[-1]
        return ModelSpec(id=self.full_name(name), builder=self.full_name(arch), input_size=input_size, family=family,
                         preprocessing=preprocessing, weights=weights)

    def construct(self, name: str, kwargs: dict[str, Any]) -> Any:
        import timm

        return timm.create_model(name, pretrained=False, **kwargs)

    def weights(self, tag: str) -> PublishedWeights:
        config = _config(tag)
        if config is None:
            raise UsageError(f"timm has no pretrained config named {tag!r}")
        _, height, width = config["input_size"]
        if height != width or config.get("crop_mode", "center") != "center":
            raise UsageError(f"timm:{tag} is evaluated at {height}x{width} with crop mode "
                             f"{config.get('crop_mode')!r}; dnnbench evaluates square centre crops only")
        return PublishedWeights(self.full_name(tag), _preprocessing(config),
                                f"timm pretrained config of {tag} (resolve_data_config)")

    def load_weights(self, spec: ModelSpec) -> Any:
        import timm
        from timm.models import get_pretrained_cfg

        from ..checkpoints import (
            LoadedModel,
            WeightsIdentity,
            WeightsUnavailableError,
            ensure_in_hub_cache,
            file_sha256,
            hf_hub_file,
            library_load_errors,
        )

        tag = spec.weights.ref.split(":", 1)[1]
        cfg = get_pretrained_cfg(tag)
        if cfg is None:
            raise WeightsUnavailableError(f"{spec.id}: timm has no pretrained config {tag!r}")
        if cfg.hf_hub_id:
            path, url = hf_hub_file(spec, cfg.hf_hub_id, cfg.hf_hub_filename)
        elif cfg.url:
            path, url = ensure_in_hub_cache(spec, cfg.url, check_hash=False), cfg.url  # timm does not check hashes
        else:
            raise WeightsUnavailableError(f"{spec.id}: timm's config {tag!r} names no file to download; "
                                          "pass --weights FILE")
        # timm's own loader (with the model's checkpoint filter) reads the file we resolved, weights_only=True
        overlay = {"file": str(path), "source": ""}
        with library_load_errors(spec, path), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = timm.create_model(tag, pretrained=True, pretrained_cfg_overlay=overlay, **dict(spec.builder_kwargs))
        return LoadedModel(model, WeightsIdentity("timm", spec.weights.ref, str(path), file_sha256(path), url))

    def seed_weights(self, name: str, row: Mapping[str, str]) -> WeightsSpec:
        same = not row["timm_weights_same_as_2018"].lower().startswith("no")
        provenance = f"2018: {row['weights_2018']}; timm: {row['timm_weights_same_as_2018']}"
        tag = row["timm_weights_tag"]
        reported = None
        if row["timm_top1"]:
            reported = ReportedAccuracy(float(row["timm_top1"]), float(row["timm_top5"]), f"timm results for {tag}")
        return WeightsSpec(ref=self.full_name(tag), same_as_2018=same, provenance=provenance, reported=reported)


SOURCE = TimmSource()
