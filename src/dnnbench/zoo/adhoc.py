"""Ad hoc models beyond the seed suite: any timm or torchvision classifier, fed as its library's own
pretrained configuration says."""

from __future__ import annotations

import math
from functools import lru_cache

from ..errors import UnknownModelError
from .spec import ModelSpec, Preprocessing, ReportedAccuracy, WeightsSpec


@lru_cache(maxsize=1)
def _timm_names() -> tuple[str, ...]:
    import timm

    return tuple(timm.list_models())


@lru_cache(maxsize=1)
def _torchvision_names() -> tuple[str, ...]:
    import torchvision

    # classification models only: detection/segmentation builders take other inputs
    return tuple(torchvision.models.list_models(module=torchvision.models))


def exact_library_names(name: str) -> list[str]:
    """`efficientnet_b0` typed without its library: point at `timm:efficientnet_b0`."""
    return [f"timm:{name}"] * (name in _timm_names()) + [f"torchvision:{name}"] * (name in _torchvision_names())


def _timm_spec(name: str) -> ModelSpec:
    import timm
    from timm.models import get_pretrained_cfg

    arch, _, tag = name.partition(".")
    if not timm.is_model(arch):
        from .registry import close_names

        raise UnknownModelError(f"timm:{name}", [f"timm:{n}" for n in close_names(arch, list(_timm_names()))], "timm")
    cfg = get_pretrained_cfg(name) if tag else get_pretrained_cfg(arch)
    preprocessing = None
    input_size = 224
    weights = WeightsSpec(ref=None, same_as_2018=None, provenance="timm has no pretrained weights for this name")
    if cfg is not None:
        input_size = int(cfg.input_size[-1])
        crop_pct = cfg.crop_pct or 0.875
        # timm's eval transform: resize the shorter side to floor(size / crop_pct), then centre crop
        preprocessing = Preprocessing(
            input_size=input_size, resize_size=math.floor(input_size / crop_pct),
            interpolation=cfg.interpolation or "bilinear",
            mean=tuple(cfg.mean), std=tuple(cfg.std),  # type: ignore[arg-type]
        )
        full_tag = f"{arch}.{cfg.tag}" if cfg.tag else arch
        weights = WeightsSpec(ref=f"timm:{full_tag}", same_as_2018=None, provenance="timm pretrained config")
    family = timm.models.model_entrypoint(arch).__module__.rsplit(".", 1)[-1]
    return ModelSpec(
        id=f"timm:{name}", builder=f"timm:{arch}", input_size=input_size, family=family,
        preprocessing=preprocessing, weights=weights,
    )


def _torchvision_spec(name: str) -> ModelSpec:
    import torchvision

    if name not in _torchvision_names():
        from .registry import close_names

        suggestions = [f"torchvision:{n}" for n in close_names(name, list(_torchvision_names()))]
        raise UnknownModelError(f"torchvision:{name}", suggestions, "torchvision's classification models")
    weights_enum = torchvision.models.get_model_weights(name).DEFAULT
    transform = weights_enum.transforms()  # torchvision's own eval transform for these weights
    crop, resize = int(transform.crop_size[0]), int(transform.resize_size[0])
    preprocessing = Preprocessing(
        input_size=crop, resize_size=resize, interpolation=transform.interpolation.value,
        mean=tuple(transform.mean), std=tuple(transform.std),  # type: ignore[arg-type]
    )
    metrics = weights_enum.meta.get("_metrics", {}).get("ImageNet-1K", {})
    reported = None
    if "acc@1" in metrics:
        reported = ReportedAccuracy(metrics["acc@1"], metrics.get("acc@5"), f"torchvision weights metadata ({weights_enum})")
    weights = WeightsSpec(ref=f"torchvision:{weights_enum}", same_as_2018=None, provenance="torchvision DEFAULT weights", reported=reported)
    family = torchvision.models.get_model_builder(name).__module__.rsplit(".", 1)[-1]
    return ModelSpec(
        id=f"torchvision:{name}", builder=f"torchvision:{name}", input_size=crop, family=family,
        preprocessing=preprocessing, weights=weights,
    )


def _python_spec(target: str) -> ModelSpec:
    """`python:package.module:factory` - your own network: `factory()` returns an nn.Module taking
    (N, 3, 224, 224) images. The module is imported (it is your code) when the model is built."""
    module, _, factory = target.partition(":")
    if not module or not factory.isidentifier():
        raise UnknownModelError(f"python:{target}", [], "python: models (write python:package.module:factory)")
    return ModelSpec(id=f"python:{target}", builder=f"python:{target}", input_size=224, family="custom")


@lru_cache(maxsize=256)
def adhoc_spec(name: str) -> ModelSpec:
    library, _, model = name.partition(":")
    if not model:
        raise UnknownModelError(name, [], f"{library} (no model name after the colon)")
    if library == "python":
        return _python_spec(model)
    return _timm_spec(model) if library == "timm" else _torchvision_spec(model)
