"""Pretrained weights: library caches, local files, refused pickles and misfit checkpoints, offline."""

import hashlib
import os
import pickle
import socket

import pytest
import torch
from safetensors.torch import save_file

from dnnbench import zoo
from dnnbench.zoo import weights as W

SHAPE_NET = "python:dnnbench_accuracy_models:shape_net"
WIDE_NET = "python:dnnbench_accuracy_models:wide_shape_net"
FAKE_REVISION = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def offline_with_empty_caches(tmp_path, monkeypatch):
    """Caches in tmp_path, offline, and any attempt to open a connection fails the test."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def no_network(*args, **kwargs):
        raise AssertionError("a test tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)


def same_tensors(a, b):
    a, b = a.state_dict(), b.state_dict()
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class RunsCode:
    """Unpickling this runs a shell command: the marker file proves whether it ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_files_in_every_form_load_the_same_tensors(tmp_path):
    spec = zoo.get(SHAPE_NET)
    source = zoo.build_model(spec)
    state = source.state_dict()
    forms = {
        "plain.pt": (state, None, None),
        "nested.pth": ({"state_dict": state, "epoch": 7}, "state_dict", None),
        "ddp.pth": ({"model": {f"module.{k}": v for k, v in state.items()}}, "model", "module."),
        "lightning.ckpt": ({"state_dict": {f"model.{k}": v for k, v in state.items()}}, "state_dict", "model."),
    }
    for name, (checkpoint, _key, _prefix) in forms.items():
        torch.save(checkpoint, tmp_path / name)
    save_file(state, tmp_path / "weights.safetensors")
    save_file(state, tmp_path / "weights.bin")  # safetensors without the suffix is recognised by its header
    for name in [*forms, "weights.safetensors", "weights.bin"]:
        loaded = W.load_model(spec, tmp_path / name)
        assert same_tensors(loaded.model, source), name
        identity = loaded.weights
        assert identity.source == "file" and identity.sha256 == hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()
        assert identity.config_key == f"file:sha256:{identity.sha256}"
        if name in forms:
            assert (identity.checkpoint_key, identity.stripped_prefix) == forms[name][1:]


@pytest.mark.parametrize("how", ["torch.save", "pickle.dump"])
def test_a_pickle_that_would_run_code_is_refused(tmp_path, how):
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pth"
    if how == "torch.save":
        torch.save({"state_dict": RunsCode(marker)}, path)
    else:
        with open(path, "wb") as f:
            pickle.dump({"state_dict": RunsCode(marker)}, f, protocol=2)  # the legacy (non-zip) torch format
    with pytest.raises(W.UnsafeCheckpointError) as caught:
        W.load_model(zoo.get(SHAPE_NET), path)
    message = str(caught.value)
    assert "was refused" in message and "system" in message and "weights_only=True" in message
    assert not marker.exists()


def test_a_checkpoint_of_another_architecture_names_the_first_mismatching_key(tmp_path):
    state = zoo.build_model(zoo.get(SHAPE_NET)).state_dict()
    save_file(state, tmp_path / "shape.safetensors")
    with pytest.raises(W.WeightsMismatchError) as caught:
        W.load_model(zoo.get(WIDE_NET), tmp_path / "shape.safetensors")
    assert "first mismatching key 'stem.weight': shape [12, 3, 2, 2] in the checkpoint, [16, 3, 2, 2] in the model" \
        in str(caught.value)
    state = dict(state)
    del state["head.bias"]
    state["extra.weight"] = torch.zeros(1)
    save_file(state, tmp_path / "odd.safetensors")
    with pytest.raises(W.WeightsMismatchError, match=r"missing keys \(1\): head.bias; unexpected keys \(1\): extra.weight"):
        W.load_model(zoo.get(SHAPE_NET), tmp_path / "odd.safetensors")


def test_files_without_a_state_dict_or_missing(tmp_path):
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(W.WeightsError, match="holds no state dict"):
        W.load_model(zoo.get(SHAPE_NET), tmp_path / "list.pt")
    with pytest.raises(W.WeightsError, match="does not exist"):
        W.load_model(zoo.get(SHAPE_NET), tmp_path / "nothing.pt")


def hub_file(ref):
    import torchvision

    return W.hub_checkpoint_path(torchvision.models.get_weight(ref.split(":", 1)[1]).url)


def test_torchvision_weights_come_from_torch_hubs_cache_through_torchvision():
    import torchvision

    spec = zoo.get("googlenet")
    # what the real file holds: GoogLeNet with its auxiliary heads, which torchvision loads and then drops
    published = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False)
    path = hub_file(spec.weights.ref)
    path.parent.mkdir(parents=True)
    torch.save(published.state_dict(), path)
    loaded = W.load_model(spec)
    model = loaded.model
    assert model.transform_input is True and model.aux1 is None and not model.training
    assert all(torch.equal(model.state_dict()[k], v) for k, v in published.state_dict().items() if not k.startswith("aux"))
    assert loaded.weights.url == "https://download.pytorch.org/models/googlenet-1378be20.pth"
    assert loaded.weights.file == str(path) and loaded.weights.sha256 == W.file_sha256(path)
    assert loaded.weights.config_key == "torchvision:GoogLeNet_Weights.IMAGENET1K_V1"


def test_a_cached_file_is_also_read_weights_only_and_must_fit(tmp_path):
    spec = zoo.get("squeezenet1_1")
    path = hub_file(spec.weights.ref)
    path.parent.mkdir(parents=True)
    marker = tmp_path / "code-ran"
    torch.save({"weight": RunsCode(marker)}, path)
    with pytest.raises(W.UnsafeCheckpointError):
        W.load_model(spec)
    assert not marker.exists()
    torch.save(zoo.build_model(zoo.get("squeezenet1_0")).state_dict(), path)
    with pytest.raises(W.WeightsMismatchError, match="does not fit squeezenet1_1: .*Missing key"):
        W.load_model(spec)


def test_timm_weights_come_from_the_hugging_face_cache(tmp_path):
    import timm

    spec = zoo.get("mobilenet")
    tag = spec.weights.ref.split(":", 1)[1]
    published = timm.create_model(tag, pretrained=False)
    repo = tmp_path / "hf" / f"models--timm--{tag}"
    (repo / "snapshots" / FAKE_REVISION).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(FAKE_REVISION)
    save_file(published.state_dict(), repo / "snapshots" / FAKE_REVISION / "model.safetensors")
    loaded = W.load_model(spec)
    assert same_tensors(loaded.model, published)
    assert loaded.weights.url == f"https://huggingface.co/timm/{tag}/resolve/main/model.safetensors"
    assert loaded.weights.source == "timm" and loaded.weights.file.endswith("model.safetensors")


def test_pretrainedmodels_weights_come_from_torch_hubs_cache():
    spec = zoo.get("nasnetamobile")
    published = zoo.build_model(spec)
    url = W.pretrainedmodels_settings("nasnetamobile/imagenet")["url"]
    path = W.hub_checkpoint_path(url)
    path.parent.mkdir(parents=True)
    torch.save(published.state_dict(), path)
    loaded = W.load_model(spec)
    assert same_tensors(loaded.model, published) and loaded.model.input_space == "RGB"
    assert loaded.weights.url == url and loaded.weights.sha256 == W.file_sha256(path)


@pytest.mark.parametrize("model, must_name", [
    ("resnet18", ["https://download.pytorch.org/models/resnet18-f37072fd.pth", "hub/checkpoints/resnet18-f37072fd.pth"]),
    ("dpn68", ["https://huggingface.co/timm/dpn68.mx_in1k/resolve/main/model.safetensors",
               "hf download timm/dpn68.mx_in1k model.safetensors --cache-dir"]),
    ("senet154", ["legacy_senet154-e9eb9fe6.pth", "hub/checkpoints/legacy_senet154-e9eb9fe6.pth"]),
    ("bninception", ["http://data.lip6.fr/cadene/pretrainedmodels/bn_inception-52deb4733.pth",
                     "hub/checkpoints/bn_inception-52deb4733.pth"]),
    ("shufflenet", ["no pretrained weights exist"]),
])
def test_offline_and_not_cached_says_what_to_download_and_where(model, must_name, tmp_path):
    with pytest.raises(W.WeightsUnavailableError) as caught:
        W.load_model(zoo.get(model))
    message = str(caught.value)
    for text in must_name + ["--weights FILE"]:
        assert text in message
    if model != "shufflenet":
        assert str(tmp_path) in message  # the exact cache location


def test_offline_switches(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("DNNBENCH_OFFLINE", raising=False)
    assert not W.is_offline()
    monkeypatch.setenv("DNNBENCH_OFFLINE", "true")
    assert W.is_offline()
