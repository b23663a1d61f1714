"""`dnnbench profile` over the whole zoo: the pool of workers, its isolation and resume, and the models
that used to fail on the meta device."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from dnnbench import zoo
from dnnbench.run.zoo_profile import ProfileRequest, count_one, profile_models
from dnnbench.store import Store
from dnnbench.zoo.timm_results import SOURCE, UNKNOWN, timm_reported

ENV = {"PATH": "", "HF_HUB_OFFLINE": "1",
       **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}}

# Models the test writes: three that count, one that kills the process counting it, one that raises while
# building, one that never finishes.
MODELS = textwrap.dedent("""
    import os, signal, time
    from torch import nn

    def _tiny(width):
        return nn.Sequential(nn.Conv2d(3, width, 3, stride=2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(width, 10))

    def tiny_a():
        return _tiny(4)

    def tiny_b():
        return _tiny(8)

    def tiny_c():
        return _tiny(16)

    def killer():
        os.kill(os.getpid(), signal.SIGKILL)

    def broken():
        raise RuntimeError("this architecture needs real weights")

    def sleeper():
        time.sleep(600)
""")


@pytest.fixture()
def models_module(tmp_path, monkeypatch):
    name = f"profile_test_models_{os.getpid()}"
    (tmp_path / f"{name}.py").write_text(MODELS)
    monkeypatch.syspath_prepend(str(tmp_path))  # spawned workers get the parent's sys.path
    return name


def specs(module: str, *factories: str):
    return zoo.resolve_models(tuple(f"python:{module}:{f}" for f in factories))


def test_a_killed_worker_loses_only_its_model_and_resume_skips_the_counted(tmp_path, models_module):
    chosen = specs(models_module, "tiny_a", "killer", "tiny_b", "broken", "tiny_c")
    with Store(tmp_path / "s.sqlite") as store:
        outcome = profile_models(chosen, store, workers=2)
        assert sorted(outcome.counted) == sorted(s.id for s in chosen if "tiny" in s.id)
        failed = {f.model.rsplit(":", 1)[1]: f for f in outcome.failed}
        assert set(failed) == {"killer", "broken"}
        assert failed["killer"].status == "crash" and "SIGKILL" in failed["killer"].reason
        assert failed["broken"].status == "unsupported" and "needs real weights" in failed["broken"].reason
        stored = {r.model.rsplit(":", 1)[1]: r for r in store.results(metric="complexity")}
        assert {k: r.status for k, r in stored.items()} == {
            "tiny_a": "ok", "tiny_b": "ok", "tiny_c": "ok", "killer": "crash", "broken": "unsupported"}
        assert stored["tiny_b"].values.macs == count_one(chosen[2], ProfileRequest())["macs"] > 0
        first_run = {r.model: r.run_id for r in store.results(metric="complexity")}

        seen = []
        again = profile_models(chosen[:1] + chosen[2:3] + chosen[4:], store, workers=2,
                               on_start=lambda total, reused: seen.append((total, reused)))
        assert seen == [(0, 3)] and again.workers_started == 0  # nothing left to count: no worker started
        assert {r.model: r.run_id for r in store.results(metric="complexity")} == first_run


def test_a_model_that_never_finishes_times_out_alone(tmp_path, models_module):
    chosen = specs(models_module, "sleeper", "tiny_a")
    with Store(tmp_path / "s.sqlite") as store:
        outcome = profile_models(chosen, store, workers=1, timeout_s=15)
    assert list(outcome.counted) == [chosen[1].id]
    assert [(f.model, f.status) for f in outcome.failed] == [(chosen[0].id, "timeout")]


def test_workers_are_replaced_after_max_tasks(tmp_path, models_module):
    chosen = specs(models_module, "tiny_a", "tiny_b", "tiny_c")
    with Store(tmp_path / "s.sqlite") as store:
        outcome = profile_models(chosen, store, workers=1, max_tasks=2)
    assert len(outcome.counted) == 3 and outcome.workers_started == 2


@pytest.mark.parametrize("name", ["vit_base_patch16_siglip_512", "vit_so150m_patch16_reg4_map_256"])
def test_vits_with_an_attention_pool_head_count(name):
    """They failed with "'NoneType' object has no attribute 'next_functions'": the counter's module tracker
    hooked autograd on a view of the head's learned query. Checked against the transformer's own arithmetic:
    per block N x (4 D^2 + 2 D H) for the projections and MLP, 2 N^2 D for attention, plus the patch embedding."""
    spec = zoo.get(f"timm:{name}")
    counted = count_one(spec, ProfileRequest())
    net = zoo.build_model(spec, "meta")
    dim, blocks, hidden = net.embed_dim, len(net.blocks), net.blocks[0].mlp.fc1.out_features
    patches = net.patch_embed.num_patches
    tokens = patches + net.num_prefix_tokens
    patch = net.patch_embed.proj.kernel_size
    expected = (blocks * (tokens * (4 * dim**2 + 2 * dim * hidden) + 2 * tokens**2 * dim)
                + patches * 3 * patch[0] * patch[1] * dim)
    assert counted["macs"] == pytest.approx(expected, rel=0.02)  # the rest: the pooling head
    assert counted["params"] == sum(p.numel() for p in net.parameters())


def test_volo_with_crop_pct_above_one_counts_and_keeps_its_preprocessing():
    spec = zoo.get("timm:volo_d5_512")
    assert spec.preprocessing.input_size == 512 and spec.preprocessing.resize_size == 445  # crop_pct 1.15
    counted = count_one(spec, ProfileRequest())
    assert counted["input_size"] == 512 and counted["macs"] > 0
    assert counted["params"] / 1e6 == pytest.approx(296.09, abs=0.005)  # timm's published param_count


def test_timm_reported_accuracy_is_looked_up_by_tag_and_unknown_is_kept():
    assert timm_reported("timm:volo_d5_512.sail_in1k").top1 == pytest.approx(87.068)
    assert zoo.get("timm:volo_d5_512").weights.reported.source.startswith(SOURCE)
    untrained = zoo.get("timm:convnext_atto_rms")  # its default tag has no published row
    assert untrained.weights.reported is None
    from dnnbench.cli.render import model_rows

    row = model_rows([untrained])[0]
    assert row["reported_top1"] is None and row["reported_source"] == UNKNOWN


def _profile(*args):
    return subprocess.run([sys.executable, "-m", "dnnbench", "profile", *args], capture_output=True, text=True,
                          env=ENV)


@pytest.mark.parametrize("pattern", ["torchvision:nothing_like_this*", "timm:zz_no_such_net*", "nothing_here*"])
def test_a_pattern_matching_nothing_is_one_clear_line_and_exit_2(pattern, tmp_path):
    result = _profile(pattern, "--db", str(tmp_path / "s.sqlite"))
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and pattern in lines[0] and "matches nothing" in lines[0], result.stderr
    assert not (tmp_path / "s.sqlite").exists()  # nothing half-written


def test_cli_keeps_counts_and_does_not_count_them_again(tmp_path):
    db = str(tmp_path / "s.sqlite")
    first = _profile("torchvision:resnet18", "torchvision:alexnet", "--db", db, "--format", "json")
    assert first.returncode == 0, first.stderr
    second = _profile("torchvision:resnet18", "torchvision:alexnet", "--db", db, "--format", "json")
    assert second.returncode == 0, second.stderr
    assert "2 models already counted in the store" in second.stderr
    assert second.stdout == first.stdout


@pytest.mark.parametrize("name", ["timm:convnext_atto", "timm:vit_tiny_patch16_224", "torchvision:mobilenet_v3_small"])
def test_meta_build_skipping_value_init_counts_the_same(name):
    """On meta, in-place initialisers are skipped (they set values that do not exist): same shapes, same count."""
    import torch

    from dnnbench.measure.complexity import count_model
    from dnnbench.zoo.sources import split_name

    spec = zoo.get(name)
    source, rest = split_name(spec.builder)
    with torch.device("meta"):
        initialised = source.construct(rest, {}).eval()
    fast = zoo.build_model(spec, "meta")
    assert [(n, p.shape) for n, p in fast.named_parameters()] == [(n, p.shape) for n, p in initialised.named_parameters()]
    assert count_model(fast, spec.input_size).to_dict() == count_model(initialised, spec.input_size).to_dict()


@pytest.mark.parametrize("name", ["regnet_y_400mf", "vit_h_14"])
def test_torchvision_models_that_failed_on_meta_count_as_torchvision_publishes(name):
    """RegNet computes its widths with tensors while it is built (no values on meta: it is built on the CPU
    with its parameters registered on meta); vit_h_14's default weights are at 518, which its positional
    embedding must be built for. Checked against torchvision's weights metadata (`_ops` is GMACs there)."""
    import torchvision

    spec = zoo.get(f"torchvision:{name}")
    counted = count_one(spec, ProfileRequest())
    meta = torchvision.models.get_model_weights(name).DEFAULT.meta
    assert counted["params"] == meta["num_params"]
    assert counted["macs"] / 1e9 == pytest.approx(meta["_ops"], rel=2e-3)
