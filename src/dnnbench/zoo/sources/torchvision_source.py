"""torchvision's classification models (`torchvision:NAME`), with the weights enums and their transforms."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from ...errors import UnknownModelError
from ..spec import ModelSpec, Preprocessing, ReportedAccuracy, WeightsSpec
from .base import ModelSource, PublishedWeights, matching

# The V1 enum of each seed architecture: the weights the 2018 study loaded from torchvision (later
# enums, V2, are newer training recipes).
_V1_WEIGHTS = {
    "alexnet": "AlexNet_Weights", "densenet121": "DenseNet121_Weights", "densenet161": "DenseNet161_Weights",
    "densenet169": "DenseNet169_Weights", "densenet201": "DenseNet201_Weights", "googlenet": "GoogLeNet_Weights",
    "inception_v3": "Inception_V3_Weights", "mobilenet_v2": "MobileNet_V2_Weights",
    "resnext101_64x4d": "ResNeXt101_64X4D_Weights", "resnet18": "ResNet18_Weights", "resnet34": "ResNet34_Weights",
    "resnet50": "ResNet50_Weights", "resnet101": "ResNet101_Weights", "resnet152": "ResNet152_Weights",
    "squeezenet1_0": "SqueezeNet1_0_Weights", "squeezenet1_1": "SqueezeNet1_1_Weights", "vgg11": "VGG11_Weights",
    "vgg13": "VGG13_Weights", "vgg16": "VGG16_Weights", "vgg19": "VGG19_Weights", "vgg11_bn": "VGG11_BN_Weights",
    "vgg13_bn": "VGG13_BN_Weights", "vgg16_bn": "VGG16_BN_Weights", "vgg19_bn": "VGG19_BN_Weights",
}
# torchvision rebuilds these itself when weights are given (auxiliary heads are loaded, then dropped)
_WEIGHTS_OWN_KWARGS = ("aux_logits", "init_weights")


@lru_cache(maxsize=1)
def _names() -> tuple[str, ...]:
    import torchvision

    # classification models only: detection/segmentation builders take other inputs
    return tuple(torchvision.models.list_models(module=torchvision.models))


class TorchvisionSource(ModelSource):
    prefix = "torchvision"
    description = "torchvision's classification models"

    def list_names(self, pattern: str = "*") -> list[str]:
        return [self.full_name(n) for n in matching(_names(), pattern)]

    def resolve(self, name: str) -> ModelSpec:
        import torchvision

        if name not in _names():
            from ..names import close_names

            suggestions = [self.full_name(n) for n in close_names(name, list(_names()))]
            raise UnknownModelError(self.full_name(name), suggestions, self.description)
        default = torchvision.models.get_model_weights(name).DEFAULT
        published = self.weights(str(default))
        metrics = default.meta.get("_metrics", {}).get("ImageNet-1K", {})
        reported = None
        if "acc@1" in metrics:
            reported = ReportedAccuracy(metrics["acc@1"], metrics.get("acc@5"),
                                        f"torchvision weights metadata ({default})")
        weights = WeightsSpec(ref=published.ref, same_as_2018=None, provenance="torchvision DEFAULT weights",
                              reported=reported)
        family = torchvision.models.get_model_builder(name).__module__.rsplit(".", 1)[-1]
        size = published.preprocessing.input_size
        # a ViT's positional embedding is sized for one input: torchvision builds it for the weights' size
        # (vit_h_14's default weights are at 518) only when given the weights, so say it when building without
        kwargs = (("image_size", size),) if family == "vision_transformer" and size != 224 else ()
        return ModelSpec(id=self.full_name(name), builder=self.full_name(name), input_size=size, family=family,
                         preprocessing=published.preprocessing, weights=weights, builder_kwargs=kwargs)

    def construct(self, name: str, kwargs: dict[str, Any]) -> Any:
        import torchvision

        return torchvision.models.get_model(name, weights=None, **kwargs)

    def weights(self, tag: str) -> PublishedWeights:
        import torchvision

        transform = torchvision.models.get_weight(tag).transforms()  # torchvision's own eval transform
        preprocessing = Preprocessing(
            input_size=int(transform.crop_size[0]), resize_size=int(transform.resize_size[0]),
            interpolation=transform.interpolation.value, mean=tuple(transform.mean), std=tuple(transform.std),
        )
        return PublishedWeights(self.full_name(tag), preprocessing, f"torchvision {tag}.transforms()")

    def load_weights(self, spec: ModelSpec) -> Any:
        import torchvision

        from ..checkpoints import (
            LoadedModel,
            WeightsIdentity,
            ensure_in_hub_cache,
            file_sha256,
            library_load_errors,
            torchvision_reads_weights_only,
        )

        name = spec.weights.ref.split(":", 1)[1]
        weights = torchvision.models.get_weight(name)
        path = ensure_in_hub_cache(spec, weights.url, check_hash=True)  # torchvision checks the hash too
        kwargs = {k: v for k, v in spec.builder_kwargs if k not in _WEIGHTS_OWN_KWARGS}
        with torchvision_reads_weights_only(), library_load_errors(spec, path), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = torchvision.models.get_model(spec.builder_name, weights=weights, progress=False, **kwargs)
        return LoadedModel(model, WeightsIdentity("torchvision", spec.weights.ref, str(path), file_sha256(path),
                                                  weights.url))

    def seed_weights(self, name: str, row: Mapping[str, str]) -> WeightsSpec:
        # torchvision's V1 weights are the ones the 2018 study loaded from torchvision
        same = row["weights_2018"].startswith("torchvision")
        return WeightsSpec(ref=self.full_name(f"{_V1_WEIGHTS[name]}.IMAGENET1K_V1"), same_as_2018=same,
                           provenance=f"2018: {row['weights_2018']}")


SOURCE = TorchvisionSource()
