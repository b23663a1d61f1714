"""The zoo: 46 seed architectures, their names, their data, suites and ad hoc library models."""

import csv
from pathlib import Path

import pytest
import torch

from dnnbench import zoo
from dnnbench.errors import SuiteFileError, UnknownModelError, UnknownSuiteError
from dnnbench.measure.complexity import complexity, count_model
from dnnbench.zoo.registry import normalize

REFERENCE = Path(__file__).resolve().parents[1] / "src/dnnbench/zoo/data/seed-architectures.csv"
ROWS = list(csv.DictReader(REFERENCE.read_text().splitlines()))


def test_paper_suite_has_the_46_seed_architectures():
    paper = zoo.get_suite("paper")
    assert len(paper.models) == 46 == len(ROWS)
    assert [zoo.get(m).paper_name for m in paper.models] == [r["paper_name"] for r in ROWS]


@pytest.mark.parametrize("row", ROWS, ids=[r["paper_name"] for r in ROWS])
def test_every_paper_name_and_key_resolves(row):
    spec = zoo.get(row["paper_name"])
    assert spec.id == row["pretrainedmodels_key"]
    for name in (row["paper_name"].upper(), row["paper_name"].lower(), row["pretrainedmodels_key"], spec.builder_name):
        assert zoo.get(name) is spec
    assert spec.input_size == int(row["input_size"])
    assert spec.in_paper


@pytest.mark.parametrize("alias, expected", [
    ("ResNet50", "resnet50"), ("ResNet-50", "resnet50"), ("resnet_50", "resnet50"),
    ("SE-ResNeXt101_32x4d", "se_resnext101_32x4d"), ("NASNet-A-Large", "nasnetalarge"),
    ("NASNetLarge", "nasnetalarge"), ("DualPathNet68", "dpn68"), ("dpn68", "dpn68"), ("DPN-68", "dpn68"),
    ("Inception-v3", "inceptionv3"), ("inception_v3", "inceptionv3"), ("BN-Inception", "bninception"),
    ("Inception-ResNet-v2", "inceptionresnetv2"), ("MobileNet-v1", "mobilenet"), ("mobilenet_v2", "mobilenetv2"),
    ("ShuffleNet-v1", "shufflenet"), ("SqueezeNet1.0", "squeezenet1_0"), ("VGG-16-BN", "vgg16_bn"),
    ("SENet-154", "senet154"), ("SE-ResNet-50", "se_resnet50"), ("ResNeXt-101-64x4d", "resnext101_64x4d"),
    ("googlenet", "googlenet"), ("Inception-v1", "googlenet"), ("xception", "xception"),
])
def test_obvious_aliases(alias, expected):
    assert zoo.get(alias).id == expected


def test_normalisation_ignores_case_and_punctuation():
    assert normalize("SE-ResNeXt101_32x4d") == normalize("se_resnext101_32x4d") == "seresnext10132x4d"


def test_unknown_model_suggests_close_names():
    with pytest.raises(UnknownModelError) as info:
        zoo.get("resnet51")
    assert "resnet50" in info.value.suggestions
    assert info.value.exit_code == 2
    with pytest.raises(UnknownModelError) as info:
        zoo.get("efficientnet_b0")  # exists in the libraries, not in the zoo
    assert info.value.suggestions[:2] == ("timm:efficientnet_b0", "torchvision:efficientnet_b0")


def test_reported_accuracy_comes_from_the_reference_table_with_its_source():
    for row in ROWS:
        spec = zoo.get(row["paper_name"])
        if row["reported_top1"]:
            assert spec.reported.top1 == float(row["reported_top1"])
            assert spec.reported.top5 == float(row["reported_top5"])
            assert spec.reported.source == row["reported_source"]
        else:
            assert spec.reported is None


def test_paper_preprocessing_follows_the_reference_table():
    bgr = zoo.get("bninception").preprocessing
    assert (bgr.color_order, bgr.value_range, bgr.mean, bgr.std) == ("BGR", 255.0, (104, 117, 128), (1, 1, 1))
    nasnet = zoo.get("nasnetalarge").preprocessing
    assert (nasnet.resize_size, nasnet.input_size, nasnet.mean) == (378, 331, (0.5, 0.5, 0.5))
    dpn = zoo.get("dpn68").preprocessing
    assert dpn.mean == (0.4863, 0.4588, 0.4078) and dpn.std == (0.2348,) * 3
    for row in ROWS:
        spec = zoo.get(row["paper_name"])
        assert f"{spec.preprocessing.resize_size}->{spec.preprocessing.input_size}" == row["eval_resize_then_crop"]
        assert spec.preprocessing.color_order == row["color_space"]


def test_weights_prefer_the_2018_weights_and_flag_replacements():
    assert zoo.get("resnet50").weights.ref == "torchvision:ResNet50_Weights.IMAGENET1K_V1"  # V1, not the 2021 V2
    assert zoo.get("resnet50").weights.same_as_2018 is True
    assert zoo.get("dpn68").weights.ref == "timm:dpn68.mx_in1k"
    assert zoo.get("bninception").weights.ref == "pretrainedmodels:bninception/imagenet"
    for flagged in ("mobilenet", "mobilenetv2", "googlenet", "resnext101_32x4d", "resnext101_64x4d"):
        assert zoo.get(flagged).weights.same_as_2018 is False, flagged
    shufflenet = zoo.get("shufflenet")
    assert shufflenet.weights.ref is None and shufflenet.builder == "dnnbench:shufflenet_v1_g8"


def test_torchvision_weight_enums_exist():
    import torchvision

    for spec in zoo.seed_specs():
        if spec.weights.library == "torchvision":
            enum_name, member = spec.weights.ref.split(":", 1)[1].split(".")
            weights = getattr(torchvision.models, enum_name)[member]
            assert weights in torchvision.models.get_model_weights(spec.builder_name), spec.id


def test_timm_weight_tags_exist_with_the_reference_crop():
    from timm.models import get_pretrained_cfg

    for spec, row in ((zoo.get(r["paper_name"]), r) for r in ROWS):
        if spec.weights.library == "timm":
            cfg = get_pretrained_cfg(spec.weights.ref.split(":", 1)[1])
            assert cfg is not None, spec.id
            assert cfg.crop_pct == pytest.approx(float(row["timm_eval_crop_pct"]), abs=1e-3), spec.id  # the table rounds


def test_suites():
    assert set(zoo.get_suite("mobile").models) <= set(zoo.get_suite("paper").models)
    for name in zoo.get_suite("mobile").models:
        assert complexity(name).macs < 1e9
    with pytest.raises(UnknownSuiteError, match="paper"):
        zoo.get_suite("papr")


def test_suite_files_toml_and_yaml(tmp_path):
    toml = tmp_path / "mine.toml"
    toml.write_text('[suites.edge]\ndescription = "board"\nmodels = ["MobileNetV2", "timm:efficientnet_b0"]\n')
    yaml = tmp_path / "mine.yaml"
    yaml.write_text("suites:\n  small:\n    models: [resnet18, ShuffleNet]\n")
    assert zoo.get_suite("edge", (str(toml),)).models == ("MobileNetV2", "timm:efficientnet_b0")
    specs = zoo.resolve_models(suite="small", suite_files=(str(yaml),))
    assert [s.id for s in specs] == ["resnet18", "shufflenet"]


@pytest.mark.parametrize("text, suffix, line, message", [
    ('[suites.edge]\nmodels = ["resnet18",\n', ".toml", 2, "not valid TOML"),
    ('[suites.edge]\nmodels = ["resnet18", "resnet51"]\n', ".toml", 2, "unknown model 'resnet51'"),
    ('[suites.edge]\ndescription = "x"\n', ".toml", 1, "needs a `models` list"),
    ("suites:\n  edge:\n    models: [resnet18\n", ".yaml", 4, "not valid YAML"),
    ("suites:\n  edge:\n    modles: [resnet18]\n", ".yaml", 2, "needs a `models` list"),
    ("models: [resnet18]\n", ".yaml", None, "expected a table `suites`"),
])
def test_malformed_suite_files_name_file_line_and_problem(tmp_path, text, suffix, line, message):
    path = tmp_path / f"bad{suffix}"
    path.write_text(text)
    with pytest.raises(SuiteFileError) as info:
        zoo.load_suite_file(path)
    assert info.value.line == line
    assert message in str(info.value)
    assert str(info.value).startswith(str(path))


def test_adhoc_library_models_take_the_library_preprocessing():
    spec = zoo.get("timm:efficientnet_b0")
    assert spec.preprocessing.interpolation == "bicubic" and spec.weights.ref.startswith("timm:efficientnet_b0.")
    tv = zoo.get("torchvision:efficientnet_b0")
    assert (tv.preprocessing.resize_size, tv.preprocessing.input_size) == (256, 224)
    assert tv.weights.reported.top1 == pytest.approx(77.692)
    vit = zoo.get("timm:vit_base_patch16_224.augreg_in21k_ft_in1k")
    assert vit.preprocessing.mean == (0.5, 0.5, 0.5)
    assert complexity("torchvision:resnet18").macs == complexity("resnet18").macs
    with pytest.raises(UnknownModelError, match="timm:resnet50"):
        zoo.get("timm:resnet5O")
    with pytest.raises(UnknownModelError, match="torchvision:resnet50"):
        zoo.get("torchvision:resnet5")


@pytest.mark.parametrize("spec", zoo.seed_specs(), ids=lambda s: s.id)
def test_every_seed_model_counts_the_same_on_meta_and_real_tensors(spec):
    """Parameters of the meta model equal the really instantiated one's; MACs equal a real-tensor count."""
    meta = complexity(spec)
    torch.manual_seed(0)
    real = count_model(zoo.build_model(spec, "cpu"), spec.input_size, 1, name=spec.id)
    assert meta.params == real.params > 0
    assert meta.macs == real.macs > 0
    assert meta.output_shape == real.output_shape == (1, 1000)
