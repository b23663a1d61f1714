"""Set-up phases and per-shape checks: the first forward at each batch size is the one timed as the first
inference, every timed shape has its own output check, and memory per batch size is measured with the
other shapes' artefacts released."""

from pathlib import Path

import pytest

from dnnbench import zoo
from dnnbench.backends import available_backends
from dnnbench.run.config import build_sweep_config
from dnnbench.run.runner import run_sweep
from dnnbench.store import Store

TESTS = Path(__file__).resolve().parent
FAST = dict(device="cpu", threads=(1,), input_size=32, time_budget_s=0.3, min_samples=3, warmup_iters=1,
            warmup_s=0.0, measure_peak=False)
HERE = {name for name, reason in available_backends("cpu").items() if reason is None}


def model(name):
    return zoo.get(f"python:dnnbench_test_models:{name}")


def sweep(tmp_path, specs, **settings):
    with Store(tmp_path / "r.sqlite") as store:
        return run_sweep(specs, build_sweep_config(**{**FAST, **settings}), store).records


def test_the_first_forward_at_each_batch_size_is_the_timed_first_inference(tmp_path, monkeypatch):
    log = tmp_path / "calls.log"
    monkeypatch.setenv("PYTHONPATH", str(TESTS))
    monkeypatch.setenv("DNNBENCH_TEST_CALL_LOG", str(log))
    records = sweep(tmp_path, [model("slow_first_call")], batch_sizes=(1, 2, 4), metrics=("time",))
    timed = {r.config["batch_size"]: r.values for r in records if r.metric == "time"}
    assert sorted(timed) == [1, 2, 4] and all(r.status == "ok" for r in records)
    for batch, value in timed.items():
        # the model sleeps at the first call it sees at a shape: that call is the one timed as the first inference
        assert value.cold_start_s >= 0.3 and value.setup.first_inference_s == value.cold_start_s
        assert max(value.samples_s) < 0.3 and value.first_call_s < 0.3  # no later call paid it
        assert value.output_check.passed and value.output_check.batch_size == batch
        assert value.setup.build_s is not None and value.setup.warmup_iters == value.warmup_iters
    calls = [int(line) for line in log.read_text().split()]
    # before the first forward at batch B, nothing ran at B (the eager reference runs only at shapes timed already)
    for batch in (1, 2, 4):
        first = calls.index(batch)
        assert all(c < batch for c in calls[:first])


@pytest.mark.skipif("compile" not in HERE, reason="torch.compile needs a C++ compiler here")
def test_an_artefact_wrong_only_at_batch_8_is_flagged_at_batch_8_only(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(TESTS))
    records = sweep(tmp_path, [model("wrong_compiled_at_batch8")], batch_sizes=(1, 8), metrics=("time", "memory"),
                    backends=("compile",))
    cells = {(r.metric, r.config["batch_size"]): r for r in records}
    assert {r.status for r in cells.values()} == {"ok"}
    for metric in ("time", "memory"):
        assert cells[metric, 1].values.output_check.passed
        assert not cells[metric, 8].values.output_check.passed  # flagged where it is wrong, and only there
        assert cells[metric, 8].values.output_check.batch_size == 8
    assert cells["time", 1].values.check_passed and not cells["time", 8].values.check_passed


@pytest.mark.skipif("openvino" not in HERE, reason="OpenVINO is not available here")
def test_openvino_memory_at_batch_8_does_not_carry_the_batch_1_model(tmp_path, monkeypatch):
    monkeypatch.setenv("DNNBENCH_CACHE", str(tmp_path / "cache"))
    settings = dict(input_size=64, metrics=("memory",), backends=("openvino",))
    spec = zoo.get("resnet18")  # 45 MB of weights, small activations at 64 px: a kept model shows
    after = sweep(tmp_path / "a", [spec], batch_sizes=(1, 8), **settings)
    alone = sweep(tmp_path / "b", [spec], batch_sizes=(8,), **settings)

    def at_8(records):
        record = next(r for r in records if r.config["batch_size"] == 8)
        assert record.status == "ok", record.error
        return record.values.headline_bytes

    assert at_8(after) == pytest.approx(at_8(alone), rel=0.10)
