"""Every model's eval transform, to the last pixel: against its zoo spec, and against the library's own
transform for its weights (torchvision `weights.transforms()`, timm `create_transform`,
pretrainedmodels `TransformImage`). Equality is exact: the same PIL resize and the same float32
operations in the same order give the same bits."""

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from dnnbench import zoo
from dnnbench.data.preprocessing import DEFAULT_PREPROCESSING, input_plan, paper_preprocessing, weights_preprocessing
from dnnbench.data.transforms import build_transform

SEEDS = zoo.seed_specs()
# their 2018 normalisation describes weights that are no longer the ones loaded (see data/preprocessing.py)
REPLACED_NORMALISATION = {"googlenet", "mobilenet"}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def images():
    """A landscape image to shrink and a portrait one to enlarge, odd-sized and full of fine detail, so
    that any difference in resizing, cropping or rounding shows."""
    rng = np.random.default_rng(0)
    made = []
    for width, height in ((400, 301), (201, 299)):
        y, x = np.mgrid[0:height, 0:width]
        smooth = np.stack([x * 255 // width, y * 255 // height, (x + y) * 255 // (width + height)], axis=-1)
        noise = rng.integers(-40, 41, size=(height, width, 3))
        made.append(Image.fromarray(np.clip(smooth + noise, 0, 255).astype("uint8"), "RGB"))
    return made


def reference(p):
    """The spec's preprocessing written with torchvision's transform classes, step by step."""
    steps = [T.Resize(p.resize_size, interpolation=T.InterpolationMode(p.interpolation)), T.CenterCrop(p.input_size),
             T.ToTensor()]
    if p.color_order == "BGR":
        steps.append(T.Lambda(lambda x: x[[2, 1, 0]]))
    if p.value_range == 255.0:
        steps.append(T.Lambda(lambda x: x * 255))
    return T.Compose(steps + [T.Normalize(p.mean, p.std)])


def assert_same(ours, theirs, images):
    for image in images:
        a, b = ours(image), theirs(image)
        assert a.dtype == b.dtype == torch.float32 and a.shape == b.shape
        assert torch.equal(a, b), f"max difference {float((a - b).abs().max())}"


@pytest.mark.parametrize("spec", SEEDS, ids=lambda s: s.id)
def test_seed_transform_follows_its_spec(spec, images):
    assert_same(build_transform(spec.preprocessing), reference(spec.preprocessing), images)


@pytest.mark.parametrize("spec", [s for s in SEEDS if s.weights.library == "torchvision"], ids=lambda s: s.id)
def test_torchvision_weights_transform_is_torchvisions(spec, images):
    import torchvision

    preprocessing, _ = weights_preprocessing(spec)
    enum = torchvision.models.get_weight(spec.weights.ref.split(":", 1)[1])
    assert_same(build_transform(preprocessing), enum.transforms(), images)


@pytest.mark.parametrize("spec", [s for s in SEEDS if s.weights.library == "timm"], ids=lambda s: s.id)
def test_timm_weights_transform_is_timms(spec, images):
    from timm.data import create_transform, resolve_data_config
    from timm.models import get_pretrained_cfg

    preprocessing, _ = weights_preprocessing(spec)
    cfg = get_pretrained_cfg(spec.weights.ref.split(":", 1)[1])
    assert_same(build_transform(preprocessing), create_transform(**resolve_data_config({}, pretrained_cfg=cfg.to_dict())), images)


@pytest.mark.parametrize("spec", [s for s in SEEDS if s.weights.library == "pretrainedmodels"], ids=lambda s: s.id)
def test_pretrainedmodels_transform_is_theirs_and_the_specs(spec, images):
    from pretrainedmodels.utils import TransformImage

    from dnnbench.zoo.weights import pretrainedmodels_settings

    preprocessing, _ = weights_preprocessing(spec)
    assert preprocessing == spec.preprocessing
    settings = pretrainedmodels_settings(spec.weights.ref.split(":", 1)[1])
    assert_same(build_transform(preprocessing), TransformImage(dict(settings)), images)


@pytest.mark.parametrize("name", ["timm:efficientnet_b0", "timm:vit_small_patch16_224.augreg_in21k_ft_in1k",
                                  "timm:volo_d5_512",  # crop_pct 1.15: resized below the crop, then padded
                                  "torchvision:efficientnet_b1", "torchvision:convnext_tiny", "torchvision:vit_b_16"])
def test_adhoc_models_use_their_librarys_transform(name, images):
    spec = zoo.get(name)
    preprocessing, _ = weights_preprocessing(spec)
    if name.startswith("timm:"):
        from timm.data import create_transform, resolve_data_config
        from timm.models import get_pretrained_cfg

        theirs = create_transform(**resolve_data_config({}, pretrained_cfg=get_pretrained_cfg(spec.weights.ref[5:]).to_dict()))
    else:
        import torchvision

        theirs = torchvision.models.get_weight(spec.weights.ref.split(":", 1)[1]).transforms()
    assert_same(build_transform(preprocessing), theirs, images)


def test_paper_mode_is_the_2018_rule_with_the_specs_normalisation():
    for spec in SEEDS:
        plan = paper_preprocessing(spec)
        assert plan.mode == "paper"
        assert plan.preprocessing.resize_size == int(spec.input_size / 0.875)
        assert plan.preprocessing.interpolation == "bilinear"
        if spec.id in REPLACED_NORMALISATION:
            assert plan.note and plan.preprocessing != spec.preprocessing
            assert plan.preprocessing.mean == weights_preprocessing(spec)[0].mean
        else:
            assert plan.preprocessing == spec.preprocessing and not plan.note, spec.id
    # torchvision's Inception-v3 weights: the (x - 0.5) / 0.5 input of the 2018 code, without transform_input
    assert paper_preprocessing(zoo.get("inceptionv3")).transform_input is False
    assert input_plan(zoo.get("inceptionv3")).transform_input is None  # weights mode: as torchvision builds it


def test_models_without_any_config_get_the_default():
    spec = zoo.get("python:dnnbench_accuracy_models:shape_net")
    assert input_plan(spec).preprocessing == DEFAULT_PREPROCESSING
    assert input_plan(spec, "paper").preprocessing == DEFAULT_PREPROCESSING
    shufflenet = zoo.get("shufflenet")
    assert input_plan(shufflenet).preprocessing == shufflenet.preprocessing
