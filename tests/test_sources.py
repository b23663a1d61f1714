"""Model sources: every source honours the one protocol; names are listed and chosen by fnmatch pattern
wherever a model name is accepted; the zoo imports no torch until a model is built."""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

import dnnbench
from dnnbench import zoo
from dnnbench.data.preprocessing import weights_preprocessing
from dnnbench.errors import SuiteFileError, UnknownModelError, UsageError
from dnnbench.zoo.sources import ModelSource, PublishedWeights, get_source

SRC = Path(dnnbench.__file__).resolve().parents[1]  # this checkout's sources, not an installed copy
TESTS = Path(__file__).resolve().parent

# one small model per source, and the weights it loads (None: the source publishes none)
EXAMPLES = {
    "dnnbench": ("shufflenet_v1_g8", None),
    "pretrainedmodels": ("bninception", "bninception/imagenet"),
    "python": ("dnnbench_test_models:tiny", None),
    "timm": ("resnet10t", "resnet10t.c3_in1k"),
    "torchvision": ("resnet18", "ResNet18_Weights.IMAGENET1K_V1"),
}


def test_every_source_is_found_by_its_module():
    assert list(zoo.sources()) == sorted(EXAMPLES)
    with pytest.raises(UsageError, match="sources: dnnbench:, pretrainedmodels:, python:, timm:, torchvision:"):
        get_source("keras")


@pytest.mark.parametrize("prefix", sorted(EXAMPLES))
def test_every_source_honours_the_protocol(prefix):
    source = get_source(prefix)
    name, weights_tag = EXAMPLES[prefix]
    assert isinstance(source, ModelSource) and source.prefix == prefix
    spec = source.resolve(name)
    assert spec.id == f"{prefix}:{name}" and spec.library == prefix
    assert zoo.get(f"{prefix}:{name}") == spec
    model = source.build(spec.builder_name, "meta", **dict(spec.builder_kwargs))
    assert not model.training
    assert all(p.device.type == "meta" for p in model.parameters())
    assert zoo.build_model(spec, "meta").__class__ is model.__class__
    if source.listable:
        assert spec.id in source.list_names(name)
        assert all(n.startswith(f"{prefix}:") for n in source.list_names("*"))
    else:
        assert source.list_names("*") == []
    if weights_tag is None:
        assert spec.weights.ref is None
        with pytest.raises(UsageError, match="no pretrained weights"):
            source.weights(name)
    else:
        # the weights come with their preprocessing, and the spec is fed as they say
        assert spec.weights.ref == f"{prefix}:{weights_tag}"
        published = source.weights(weights_tag)
        assert isinstance(published, PublishedWeights) and published.ref == spec.weights.ref
        assert published.preprocessing == spec.preprocessing == weights_preprocessing(spec)[0]
    with pytest.raises(UnknownModelError) as info:
        source.resolve("module_without_factory" if prefix == "python" else "resnet_no_such")
    assert info.value.exit_code == 2


def test_timm_patterns_are_timms():
    import timm

    assert zoo.list_models("timm:convnext*") == [f"timm:{n}" for n in timm.list_models("convnext*")]
    assert "timm:convnext_tiny" in zoo.list_models("timm:convnext*")
    tagged = zoo.list_models("timm:resnet18.*")  # a dot in the pattern selects pretrained tags
    assert "timm:resnet18.a1_in1k" in tagged and all(n.startswith("timm:resnet18.") for n in tagged)


def test_torchvision_patterns_list_classification_models_only():
    import torchvision

    every = zoo.list_models("torchvision:*")
    assert every == [f"torchvision:{n}" for n in torchvision.models.list_models(module=torchvision.models)]
    assert "torchvision:resnet50" in every and "torchvision:fasterrcnn_resnet50_fpn" not in every
    assert zoo.list_models("torchvision:ResNet1*") == ["torchvision:resnet101", "torchvision:resnet152",
                                                       "torchvision:resnet18"]


def test_pretrainedmodels_and_in_project_patterns():
    from dnnbench.zoo.sources.pretrainedmodels_source import _library

    assert zoo.list_models("pretrainedmodels:*") == [f"pretrainedmodels:{n}" for n in _library().model_names]
    assert zoo.list_models("pretrainedmodels:se_resnet*") == [
        "pretrainedmodels:se_resnet50", "pretrainedmodels:se_resnet101", "pretrainedmodels:se_resnet152"]
    assert zoo.list_models("dnnbench:*") == ["dnnbench:shufflenet_v1_g8"]


def test_seed_patterns_match_ids_paper_names_and_aliases():
    assert zoo.list_models("resnet*") == ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]
    assert zoo.list_models("ShuffleNet-v*") == ["shufflenet"]  # an alias, case-insensitive
    assert zoo.list_models("SE-ResNeXt*") == ["se_resnext50_32x4d", "se_resnext101_32x4d"]  # paper names
    assert len(zoo.list_models()) == 46
    assert zoo.list_models("*net*", suite="quick") == ["squeezenet1_1", "mobilenetv2", "shufflenet", "resnet18"]
    assert zoo.list_models("mobilenet*", suite="mobile") == ["mobilenet", "mobilenetv2"]
    specs = zoo.resolve_models(["vgg1[16]", "resnet18", "resnet1*"])
    assert [s.id for s in specs] == ["vgg11", "vgg16", "resnet18", "resnet101", "resnet152"]


@pytest.mark.parametrize("pattern, where, suggestion", [
    ("timm:convnxt_t*", "timm's models", "timm:convnext_tiny"),
    ("torchvision:resnxt*", "torchvision's classification models", "torchvision:resnext50_32x4d"),
    ("resnt*", "the zoo", "resnet50"),
])
def test_a_pattern_matching_nothing_names_pattern_source_and_suggestions(pattern, where, suggestion):
    with pytest.raises(zoo.NoMatchingModelError) as info:
        zoo.resolve_models([pattern])
    message = str(info.value)
    assert info.value.exit_code == 2
    assert f"{pattern!r}" in message and where in message and suggestion in info.value.suggestions
    assert "dnnbench models" in message
    with pytest.raises(UsageError, match="cannot be listed"):
        zoo.resolve_models(["python:mine*"])


def test_suite_files_accept_patterns(tmp_path):
    toml = tmp_path / "mine.toml"
    toml.write_text('[suites.small]\nmodels = ["resnet1*", "timm:efficientnet_b[01]"]\n')
    specs = zoo.resolve_models(suite="small", suite_files=(str(toml),))
    assert [s.id for s in specs] == ["resnet18", "resnet101", "resnet152", "timm:efficientnet_b0",
                                     "timm:efficientnet_b1"]
    yaml = tmp_path / "mine.yaml"
    yaml.write_text("suites:\n  none:\n    models:\n      - resnet18\n      - timm:efficientnet_zz*\n")
    with pytest.raises(SuiteFileError) as info:
        zoo.load_suite_file(yaml)
    assert info.value.line == 5 and "timm:efficientnet_zz*" in str(info.value)


def test_timm_crop_above_one_is_resized_below_the_crop_then_padded():
    """volo_d5_512: crop_pct 1.15, so timm resizes to 445 and its centre crop pads to 512."""
    spec = zoo.get("timm:volo_d5_512")
    assert (spec.preprocessing.resize_size, spec.preprocessing.input_size) == (445, 512)
    assert "zero-padded" in spec.preprocessing.describe()


def _run(code_or_args, *, module=False, timeout=600):
    env = {"PATH": os.environ.get("PATH", ""), "COLUMNS": "200", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(SRC), str(TESTS)])}
    args = ["-m", "dnnbench", *code_or_args] if module else ["-c", code_or_args]
    # in a folder of its own: `profile` keeps its counts in ./results, never in the repository's
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=timeout,
                          cwd=tempfile.mkdtemp(prefix="dnnbench-test-sources-"))


def test_the_zoo_imports_no_torch_to_name_list_and_resolve_seed_models():
    code = (
        "import sys\n"
        "import dnnbench.zoo as zoo\n"
        "assert len(zoo.resolve_models(suite='paper')) == 46\n"
        "assert zoo.list_models('resnet*') and zoo.get('ResNet-50').id == 'resnet50'\n"
        "zoo.get_suite('quick'); zoo.seed_specs()\n"
        "loaded = sorted(m for m in ('torch', 'torchvision', 'timm', 'pretrainedmodels') if m in sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    result = _run(code)
    assert result.returncode == 0, result.stderr


def test_profile_counts_every_model_a_pattern_matches(tmp_path):
    out = tmp_path / "profile.json"
    result = _run(["profile", "timm:efficientnet_b*", "--format", "json", "--output", str(out)], module=True)
    assert result.returncode == 0, result.stderr
    rows = json.loads(out.read_text())
    expected = zoo.list_models("timm:efficientnet_b*")
    assert len(expected) > 8  # b0 ... b8 and their variants
    assert sorted(r["model"] for r in rows) == sorted(expected)
    assert all(r["params"] > 0 and r["macs"] > 0 for r in rows)
    nothing = _run(["profile", "timm:efficientnet_zz*"], module=True)
    assert nothing.returncode == 2 and "timm:efficientnet_zz*" in nothing.stderr


def test_build_uses_the_requested_device():
    model = zoo.build_model(zoo.get("torchvision:resnet18"), torch.device("meta"))
    assert next(model.parameters()).is_meta


def test_models_lists_what_patterns_select_within_a_suite_or_the_zoo():
    listed = _run(["models", "timm:convnext_at*", "resnet1*", "--format", "json"], module=True)
    assert listed.returncode == 0, listed.stderr
    ids = [row["id"] for row in json.loads(listed.stdout)]
    assert ids == zoo.list_models("timm:convnext_at*") + zoo.list_models("resnet1*")
    in_suite = _run(["models", "mobile*", "--suite", "mobile", "--format", "json"], module=True)
    assert in_suite.returncode == 0, in_suite.stderr
    assert {row["id"] for row in json.loads(in_suite.stdout)} == set(zoo.list_models("mobile*", suite="mobile"))
    for args in (["nomatch*"], ["res*", "--suite", "mobile"]):
        refused = _run(["models", *args], module=True)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr
        assert "matches" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
