"""Energy cells: RAPL read from a powercap tree (a fake one the test writes, wrap-around included), idle power
subtracted, and on a machine without a readable counter an energy cell stored as unavailable with its reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from dnnbench.measure.energy import (
    POWERCAP_ENV,
    EnergyUnavailable,
    RaplMeter,
    energy_meter,
    idle_watts,
    measure_energy,
    rapl_domains,
    unwrap,
)

TESTS = Path(__file__).resolve().parent


def write_zone(root: Path, index: int, energy_uj: int, max_range_uj: int = 1_000_000, sub: bool = True) -> Path:
    zone = root / f"intel-rapl:{index}"
    zone.mkdir(parents=True, exist_ok=True)
    (zone / "name").write_text(f"package-{index}\n")
    (zone / "energy_uj").write_text(f"{energy_uj}\n")
    (zone / "max_energy_range_uj").write_text(f"{max_range_uj}\n")
    if sub:  # a core sub-zone: counted inside its package, never twice
        core = root / f"intel-rapl:{index}:0"
        core.mkdir(exist_ok=True)
        (core / "name").write_text("core\n")
        (core / "energy_uj").write_text("999999\n")
        (core / "max_energy_range_uj").write_text(f"{max_range_uj}\n")
    return zone / "energy_uj"


def test_rapl_sums_packages_and_undoes_wrap_around(tmp_path):
    first = write_zone(tmp_path, 0, 900_000)
    second = write_zone(tmp_path, 1, 100_000)
    meter = RaplMeter(tmp_path)
    assert meter.domains == ("package-0", "package-1")
    start = meter.read_joules()
    first.write_text("200000\n")  # wrapped: 900000 -> 1000000 -> 0 -> 200000 is 0.3 J
    second.write_text("600000\n")  # 0.5 J
    assert meter.read_joules() - start == pytest.approx(0.8)
    first.write_text("250000\n")
    assert meter.read_joules() - start == pytest.approx(0.85)
    assert unwrap(10, 30, 100) == 20 and unwrap(90, 10, 100) == 20


def test_rapl_says_why_it_is_unavailable(tmp_path, monkeypatch):
    with pytest.raises(EnergyUnavailable, match="does not exist"):
        rapl_domains(tmp_path / "missing")
    with pytest.raises(EnergyUnavailable, match="no intel-rapl:N package zone"):
        rapl_domains(tmp_path)
    write_zone(tmp_path, 0, 5)
    monkeypatch.setenv(POWERCAP_ENV, str(tmp_path))  # the parameter's default: the environment's tree
    assert energy_meter("cpu").domains == ("package-0",)
    with pytest.raises(EnergyUnavailable, match="mps"):
        energy_meter("mps")


class FakeMeter:
    """A counter that rises by `idle` W while sleeping and `busy` W while forward() runs, on a fake clock."""

    method, domains = "fake counter", ("fake",)

    def __init__(self, idle: float, busy: float):
        self.idle, self.busy, self.now, self.joules = idle, busy, 0.0, 0.0

    def read_joules(self) -> float:
        return self.joules

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.joules += self.idle * seconds

    def forward(self) -> None:
        self.now += 0.1
        self.joules += self.busy * 0.1


def test_energy_per_image_subtracts_idle_power_measured_before():
    meter = FakeMeter(idle=50.0, busy=250.0)
    assert idle_watts(meter, 1.0, meter.sleep, lambda: meter.now) == (pytest.approx(50.0), pytest.approx(1.0))
    synced = []
    result = measure_energy(meter.forward, 4, meter, lambda: synced.append(1), min_seconds=2.0, min_calls=5,
                            idle_s=1.0, warmup_calls=3, sleep=meter.sleep, clock=lambda: meter.now)
    assert result.calls == 20 and result.seconds == pytest.approx(2.0)
    assert result.idle_watts == pytest.approx(50.0) and result.joules == pytest.approx(500.0)
    assert result.net_joules == pytest.approx(400.0)  # 200 W above idle for 2 s
    assert result.joules_per_batch == pytest.approx(20.0) and result.joules_per_image == pytest.approx(5.0)
    assert result.images_per_joule == pytest.approx(0.2)
    assert result.method == "fake counter" and result.sampling_interval_s == pytest.approx(2.0) and synced


def _sweep(tmp_path, monkeypatch, metrics):
    from dnnbench import zoo
    from dnnbench.run.config import build_sweep_config
    from dnnbench.run.runner import run_sweep
    from dnnbench.store import Store

    monkeypatch.setenv("PYTHONPATH", str(TESTS))
    config = build_sweep_config(device="cpu", batch_sizes=(1,), threads=(1,), input_size=32, time_budget_s=0.2,
                                min_samples=3, warmup_iters=1, warmup_s=0.0, metrics=metrics, measure_peak=False)
    with Store(tmp_path / "r.sqlite") as store:
        return {r.metric: r for r in run_sweep([zoo.get("python:dnnbench_test_models:tiny")], config, store).records}


def test_an_energy_cell_without_a_counter_is_stored_unavailable_with_its_reason_and_the_sweep_goes_on(
        tmp_path, monkeypatch):
    monkeypatch.setenv(POWERCAP_ENV, str(tmp_path / "no-powercap-here"))
    cells = _sweep(tmp_path, monkeypatch, ("time", "energy"))
    assert cells["energy"].status == "unavailable"
    assert cells["energy"].error.startswith("energy is unavailable here, because no RAPL here")
    assert cells["time"].status == "ok"


def test_an_energy_cell_reads_rapl_from_the_powercap_tree(tmp_path, monkeypatch):
    write_zone(tmp_path / "powercap", 0, 1000)
    monkeypatch.setenv(POWERCAP_ENV, str(tmp_path / "powercap"))
    cells = _sweep(tmp_path, monkeypatch, ("energy",))
    energy = cells["energy"]
    assert energy.status == "ok", energy.error
    value = energy.values
    assert value.calls >= 10 and value.seconds >= 3.0 and value.joules == 0.0  # the fake counter stands still
    assert str(tmp_path / "powercap") in value.method and value.domains == ("package-0",)
    assert value.backend.name == "eager" and value.to_dict()["layout"] == 1


def _record(model: str, metric: str, values: dict, status: str = "ok", error: str | None = None):
    import time

    from dnnbench.store import ResultRecord
    from dnnbench.store.values import decode

    config = {"device": "cpu", "dtype": "fp32", "batch_size": 1, "input_size": 224, "threads": 1, "backend": "eager"}
    return ResultRecord(model=model, metric=metric, config=config, status=status,
                        values=decode(metric, values) if status == "ok" else None, error=error,
                        started_at=time.time(), finished_at=time.time(), machine_id="m1")


def test_select_max_joules_per_image_keeps_the_frugal_model_and_says_why_the_others_fail():
    from dnnbench.analysis import Constraints, frames_from_records, performance, select_models

    timed = {"median_s": 0.01, "stats": {"median": 0.01, "n": 10}, "ms_per_image": 10.0, "images_per_s": 100.0}
    records = [_record(m, "time", timed) for m in ("resnet50", "mobilenetv2", "vgg16")]
    records += [_record("resnet50", "energy", {"joules_per_image": 0.9, "images_per_joule": 1 / 0.9, "method": "RAPL"}),
                _record("mobilenetv2", "energy", {"joules_per_image": 0.1, "images_per_joule": 10.0, "method": "RAPL"}),
                _record("vgg16", "energy", {}, status="unavailable", error="energy is unavailable here, because ...")]
    perf = performance(frames_from_records(records))
    assert perf.set_index("model")["joules_per_image"].to_dict()["mobilenetv2"] == pytest.approx(0.1)
    assert set(perf["status"]) == {"ok"}  # an energy cell's failure does not fail the timed cell
    selection = select_models(perf, Constraints(max_joules_per_image=0.5))
    assert [c.model for c in selection.chosen] == ["mobilenetv2"]
    why = {r.candidate.model: r.describe() for r in selection.rejected}
    assert why["resnet50"].startswith("energy 0.90 > 0.50 J/image") and "--metrics energy" in why["vgg16"]
