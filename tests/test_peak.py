"""Peak FLOP/s: the spec table from known CPUs and GPUs, short measured kernels, the store's peaks table (round
trip, export, import, merge, stores from before it), % of peak and arithmetic intensity on hand-made frames,
the roofline figures and `dnnbench peak`. Nothing here asserts on wall time: timings on a shared machine vary."""

from __future__ import annotations

import json
import math
import sqlite3

import numpy as np
import pytest
from typer.testing import CliRunner

from dnnbench.analysis import frames_from_records, load_frames, performance
from dnnbench.analysis.efficiency import batch_bytes, cell_precision
from dnnbench.cli import options as app_module
from dnnbench.cli.app import app
from dnnbench.env.peak import (
    CpuInfo,
    KernelMeasurement,
    PeakEstimate,
    combine,
    cpu_clock,
    estimate_peak,
    measure_bandwidth,
    measure_dense_kernels,
    theoretical_cpu_peak,
    theoretical_cuda_peak,
)
from dnnbench.errors import UsageError
from dnnbench.report import ReportOptions, build_report, figures, interactive
from dnnbench.run import peak as stored_peaks
from dnnbench.run.peak import ensure_peak
from dnnbench.store import ResultRecord, Store
from test_analysis import MACHINES, all_records, cell_config, fill_store, time_values

ZEN4 = {"sse2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_bf16", "avx512_vnni"}
SKYLAKE_SP = {"sse2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni"}
SAPPHIRE_RAPIDS = SKYLAKE_SP | {"avx512_bf16", "avx512_fp16", "amx_bf16", "amx_int8", "amx_tile"}
HASWELL = {"sse2", "avx", "avx2", "fma", "f16c"}
AMD, INTEL = "AuthenticAMD", "GenuineIntel"
G = 1e9


def per_cycle(flags, vendor, family, model, precision="fp32"):
    """FLOP per cycle per core: the spec at 1 core and 1000 MHz, / 1e9."""
    return theoretical_cpu_peak(flags, vendor, family, model, 1, 1000.0, precision).flops / G


# --- the spec table ------------------------------------------------------------------------------------


def test_zen4_fp32_is_32_flop_per_cycle_and_bf16_int8_via_avx512_dot_products():
    assert per_cycle(ZEN4, AMD, 25, 17) == 32  # 2 FMA pipes x 8 fp32 lanes (256-bit datapaths) x 2
    assert per_cycle(ZEN4, AMD, 25, 17, "bf16") == 64  # vdpbf16ps: 2x
    assert per_cycle(ZEN4, AMD, 25, 17, "int8") == 128  # VNNI: 4x
    fp16 = theoretical_cpu_peak(ZEN4, AMD, 25, 17, 1, 1000.0, "fp16")
    assert fp16.flops == 32 * G and "no fp16 arithmetic" in fp16.path
    spec = theoretical_cpu_peak(ZEN4, AMD, 25, 17, 2, 2596.0, "fp32", "test")
    assert spec.flops == pytest.approx(2 * 32 * 2596e6) and spec.core == "AMD Zen 4" and not spec.from_flags_only
    assert "2 cores x 32 FLOP/cycle/core x 2596 MHz" in spec.describe()


def test_intel_and_older_amd_cores():
    assert per_cycle(SKYLAKE_SP, INTEL, 6, 85) == 64  # 2 x 16 lanes x 2
    assert per_cycle(SKYLAKE_SP, INTEL, 6, 85, "bf16") == 64  # no bf16 instructions: the fp32 rate
    assert per_cycle(SKYLAKE_SP, INTEL, 6, 85, "int8") == 256
    assert per_cycle(SAPPHIRE_RAPIDS, INTEL, 6, 143, "bf16") == 1024  # AMX tiles
    assert per_cycle(SAPPHIRE_RAPIDS, INTEL, 6, 143, "fp16") == 128  # AVX512_FP16: 2x
    assert per_cycle(HASWELL, INTEL, 6, 63) == 32  # AVX2: 2 x 8 lanes x 2
    assert per_cycle({"sse2", "avx"}, INTEL, 6, 42) == 16  # Sandy Bridge: add + multiply
    assert per_cycle(HASWELL, AMD, 23, 0x31) == 32  # Zen 2
    assert per_cycle(HASWELL, AMD, 23, 0x01) == 16  # Zen 1: 128-bit halves
    assert per_cycle(HASWELL, AMD, 25, 0x21) == 32  # Zen 3


def test_unknown_cpus_fall_back_conservatively_from_flags():
    spec = theoretical_cpu_peak(HASWELL, "HygonGenuine", 24, 1, 4, 2000.0)
    assert spec.from_flags_only and spec.flop_per_cycle_per_unit == 16  # one 256-bit FMA unit, not two
    assert "estimated from flags only" in spec.describe()
    arm = theoretical_cpu_peak({"asimd", "asimddp"}, "Arm implementer 0x41", None, None, 1, 1000.0, "int8")
    assert arm.from_flags_only and arm.flops == 4 * 8 * G
    assert theoretical_cpu_peak(set(), None, None, None, 1, 1000.0).flops == 4 * G  # scalar
    no_clock = theoretical_cpu_peak(ZEN4, AMD, 25, 17, 1, None)
    assert no_clock.flops is None and "no clock" in no_clock.describe()
    with pytest.raises(UsageError, match="CUDA"):
        theoretical_cpu_peak(ZEN4, AMD, 25, 17, 1, 1000.0, "tf32")
    with pytest.raises(UsageError, match="unknown precision"):
        theoretical_cpu_peak(ZEN4, AMD, 25, 17, 1, 1000.0, "fp8")


def test_clock_prefers_the_maximum_frequency():
    lscpu = "Model name: X\nCPU max MHz:                  3700.0000\nCPU min MHz: 400\n"
    assert cpu_clock([3_500_000, 3_600_000], lscpu, [2596.0]) == (3600.0, "cpufreq cpuinfo_max_freq")
    assert cpu_clock([], lscpu, [2596.0]) == (3700.0, "lscpu CPU max MHz")
    mhz, source = cpu_clock([], "", [2596.1, 2400.0])
    assert mhz == 2596.1 and "misses turbo" in source
    assert cpu_clock([], "", []) == (None, "unknown")


def test_cuda_spec_table():
    h100 = theoretical_cuda_peak("9.0", 132, 1830.0, "fp16")
    assert h100.flops == pytest.approx(989.4e12, rel=1e-3)  # NVIDIA's dense fp16 figure for H100 SXM
    a100 = {p: theoretical_cuda_peak((8, 0), 108, 1410.0, p).flops for p in ("fp32", "tf32", "fp16", "bf16")}
    assert a100 == pytest.approx({"fp32": 19.5e12, "tf32": 156e12, "fp16": 312e12, "bf16": 312e12}, rel=1e-2)
    assert theoretical_cuda_peak("7.5", 40, 1590.0, "fp16").flops == pytest.approx(65e12, rel=1e-2)  # T4
    unknown = theoretical_cuda_peak("3.5", 10, 1000.0, "fp32")
    assert unknown.flops is None and "not in the table" in unknown.describe()
    assert theoretical_cuda_peak("7.0", 80, 1530.0, "bf16").flops is None  # no bf16 tensor cores on V100


# --- combining spec and measurement --------------------------------------------------------------------


def kernel(name: str, rate: float) -> KernelMeasurement:
    return KernelMeasurement(name, "op", "shape", "fp32", "cpu", 1, rate, 3, 3.0, 1.0, 1.0, "time.perf_counter")


def test_peak_is_the_spec_raised_to_a_faster_kernel():
    spec = theoretical_cpu_peak(ZEN4, AMD, 25, 17, 2, 2596.0)  # 166 GFLOP/s at the nominal clock
    peak, basis, detail = combine(spec, [kernel("matmul", 183e9), kernel("conv3x3", 231e9)])
    assert peak == 231e9 and basis == "measured conv3x3"
    assert "beats the spec" in detail and "sustained clock of about 3,609 MHz" in detail
    peak, basis, detail = combine(spec, [kernel("matmul", 83e9)])
    assert peak == spec.flops and basis == "spec" and "50% of it" in detail
    assert combine(spec, []) [:2] == (spec.flops, "spec")
    assert combine(theoretical_cuda_peak("3.5", 1, 1.0), [kernel("matmul", 5e12)])[:2] == (5e12, "measured matmul")
    assert combine(None, []) == (None, "none", "no spec estimate and no kernel measured")


# --- measured kernels (tiny shapes: seconds at most) ---------------------------------------------------


def _finite_positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_measured_kernels_give_finite_positive_rates(one_thread, precision):
    kernels = measure_dense_kernels("cpu", precision, threads=1, seconds=0.05, matmul_n=64, conv_shape=(1, 8, 8, 8, 8))
    assert [k.kernel for k in kernels] == ["matmul", "conv3x3"]
    for k in kernels:
        assert _finite_positive(k.rate) and _finite_positive(k.median_rate) and k.rate >= k.median_rate
        assert k.calls >= 3 and k.threads == 1 and k.dtype == precision and k.device == "cpu"
    assert kernels[0].shape == "64x64 @ 64x64" and kernels[0].work_per_call == 2 * 64**3
    assert measure_dense_kernels("cpu", "int8", threads=1) == ()  # no PyTorch int8 dense kernel: spec only


def test_bandwidth_and_a_whole_estimate(one_thread):
    copy = measure_bandwidth("cpu", threads=1, seconds=0.02, mib=1)
    assert copy.kernel == "copy" and _finite_positive(copy.rate) and copy.work_per_call == 2 * 2**20
    cpu = CpuInfo(AMD, 25, 17, "AMD EPYC", frozenset(ZEN4), 2, 1, 1.0, "test")  # 1 MHz: the kernels beat it
    estimate = estimate_peak("cpu", "fp32", 1, seconds=0.05, cpu=cpu, matmul_n=64, conv_shape=(1, 8, 8, 8, 8),
                             bandwidth_mib=1)
    assert estimate.threads == 1 and estimate.theoretical_flops == 32e6
    assert estimate.peak_flops == estimate.measured_flops > estimate.theoretical_flops
    assert estimate.basis.startswith("measured ") and _finite_positive(estimate.bandwidth_bytes_per_s)
    assert estimate.contention is not None and "other_cores" in estimate.contention
    again = PeakEstimate.from_dict(json.loads(json.dumps(estimate.to_dict())))
    assert again == estimate
    with pytest.raises(UsageError, match="cpu and cuda"):
        estimate_peak("mps", "fp32")
    with pytest.raises(UsageError, match="CUDA"):
        estimate_peak("cpu", "tf32", 1, measure=False)


@pytest.mark.gpu
def test_cuda_estimate():
    estimate = estimate_peak("cuda", "fp16", seconds=0.5, matmul_n=1024, conv_shape=(4, 64, 28, 28, 64),
                             bandwidth_mib=64)
    assert estimate.device == "cuda:0" and estimate.threads == 0
    assert _finite_positive(estimate.measured_flops) and _finite_positive(estimate.peak_flops)
    assert all(k.timer == "CUDA events" for k in estimate.kernels)


# --- the store -----------------------------------------------------------------------------------------


def estimate_dict(peak: float, device: str = "cpu", precision: str = "fp32", threads: int = 2, at: float = 100.0,
                  bandwidth: float | None = 20e9) -> dict:
    return {"device": device, "precision": precision, "threads": threads, "peak_flops": peak, "basis": "spec",
            "basis_detail": "by hand", "theoretical_flops": peak, "measured_flops": None, "spec": None,
            "kernels": [], "bandwidth_bytes_per_s": bandwidth, "bandwidth": None, "contention": None,
            "measured_at": at, "torch_version": None, "device_name": None, "unit": "FLOP/s"}


def test_store_peaks_round_trip_export_import_and_merge(tmp_path):
    with Store(tmp_path / "a.sqlite") as store:
        store.register_machine("m1", {"hostname": "one"})
        store.put_peak("m1", estimate_dict(100e9))
        store.put_peak("m1", estimate_dict(120e9, at=200.0))  # a re-measurement replaces the old one
        store.put_peak("m1", estimate_dict(300e9, "cuda:0", "fp16", 0))
        assert [(p["device"], p["precision"], p["threads"], p["peak_flops"]) for p in store.peaks()] == [
            ("cpu", "fp32", 2, 120e9), ("cuda:0", "fp16", 0, 300e9)]
        assert store.peak("m1", "cpu", "fp32", 2)["estimate"]["basis_detail"] == "by hand"
        assert store.peak("m1", "cpu", "fp32", 1) is None and store.peak("m1", "cuda:0", "fp16", None) is not None
        with pytest.raises(UsageError, match="unknown machine"):
            store.put_peak("nobody", estimate_dict(1.0))
        store.export(tmp_path / "a.json")
        document = store.document()
    assert len(document["peaks"]) == 2
    with Store(tmp_path / "imported.sqlite") as imported:
        assert imported.import_json(tmp_path / "a.json") == 1 + 2  # the machine and its two peaks
        assert imported.peaks() == document["peaks"]
    with Store(tmp_path / "b.sqlite") as other:
        other.register_machine("m1", {"hostname": "one"})
        other.put_peak("m1", estimate_dict(90e9, at=50.0))  # older than a's: the merge keeps a's
        other.put_peak("m1", estimate_dict(60e9, threads=1, at=50.0))
        assert other.merge_from(tmp_path / "a.sqlite") == 1  # cuda:0 fp16 is new; cpu fp32 2 threads replaced
        assert {(p["threads"], p["peak_flops"]) for p in other.peaks() if p["device"] == "cpu"} == {(1, 60e9),
                                                                                                   (2, 120e9)}
        assert other.merge_from(tmp_path / "a.sqlite") == 0  # twice adds nothing


def test_stores_and_exports_from_before_peaks(tmp_path):
    path = tmp_path / "old.sqlite"
    with Store(path) as store:
        store.register_machine("m1", {})
        store.export(tmp_path / "old.json")
    con = sqlite3.connect(path)
    con.execute("DROP TABLE peaks")  # as a store written before the peaks table
    con.commit()
    con.close()
    with Store(path, create=False) as store:
        assert store.peaks() == [] and store.peak("m1", "cpu", "fp32", 1) is None
        assert store.document()["peaks"] == []
        store.put_peak("m1", estimate_dict(1e9))  # creates the table
        assert len(store.peaks()) == 1
    doc = json.loads((tmp_path / "old.json").read_text())
    del doc["peaks"]
    (tmp_path / "old.json").write_text(json.dumps(doc))
    with Store(tmp_path / "new.sqlite") as store:
        assert store.import_json(tmp_path / "old.json") == 1 and store.peaks() == []


def test_ensure_peak_measures_only_when_the_store_has_none(tmp_path, monkeypatch):
    calls = []

    def fake(device, precision, threads, seconds):
        calls.append((device, precision, threads))
        return PeakEstimate(device, precision, threads or 0, 5e9, "spec", "fake", 5e9, None, None)

    monkeypatch.setattr(stored_peaks, "estimate_peak", fake)
    with Store(tmp_path / "s.sqlite") as store:
        store.register_machine("m1", {})
        first = ensure_peak(store, "m1", "cpu", "fp32", 2)
        second = ensure_peak(store, "m1", "cpu", "float32", 2)
        assert calls == [("cpu", "fp32", 2)] and first.peak_flops == second.peak_flops == 5e9
        ensure_peak(store, "m1", "cpu", "fp32", 2, force=True)
        ensure_peak(store, "m1", "cuda", "fp16", 8)  # threads mean nothing on a GPU
        ensure_peak(store, "m1", "cuda:0", "fp16")
        assert calls[1:] == [("cpu", "fp32", 2), ("cuda:0", "fp16", None)]
        assert store.peak("m1", "cuda:0", "fp16", 0) is not None


def test_ensure_peak_measures_a_contended_estimate_again_and_keeps_the_higher(tmp_path, monkeypatch):
    results = iter([(7e9, True), (6e9, True), (5e9, False)])  # (peak, contended) of successive measurements

    def fake(device, precision, threads, seconds):
        peak, contended = next(results)
        return PeakEstimate(device, precision, threads or 0, peak, "spec", "fake", peak, None, None,
                            contention={"contended": contended, "other_cores": 1.0})

    monkeypatch.setattr(stored_peaks, "estimate_peak", fake)
    with Store(tmp_path / "s.sqlite") as store:
        store.register_machine("m1", {})
        assert ensure_peak(store, "m1", "cpu", "fp32", 1).peak_flops == 7e9  # contended: stored all the same
        assert ensure_peak(store, "m1", "cpu", "fp32", 1).peak_flops == 7e9  # measured again, lower: kept
        assert ensure_peak(store, "m1", "cpu", "fp32", 1).peak_flops == 5e9  # a quiet measurement replaces it
        assert ensure_peak(store, "m1", "cpu", "fp32", 1).peak_flops == 5e9  # and is not measured again
        assert store.peak("m1", "cpu", "fp32", 1)["peak_flops"] == 5e9


# --- % of peak and arithmetic intensity ----------------------------------------------------------------

PEAKS = [{"machine_id": "m-a", "estimate": estimate_dict(400e9), **{k: v for k, v in estimate_dict(400e9).items()
                                                                    if k in ("device", "precision", "threads",
                                                                             "peak_flops", "measured_at")}},
         {"machine_id": "m-b", "estimate": estimate_dict(8e12, "cuda:0", "fp32", 0, bandwidth=300e9),
          "device": "cuda:0", "precision": "fp32", "threads": 0, "peak_flops": 8e12, "measured_at": 1.0},
         {"machine_id": "m-a", "estimate": estimate_dict(800e9, precision="bf16"), "device": "cpu",
          "precision": "bf16", "threads": 2, "peak_flops": 800e9, "measured_at": 1.0}]


def bf16_record() -> ResultRecord:
    """A cell that asked for fp32 but whose backend executed bf16: matched with the bf16 peak."""
    config = {**cell_config(4, "cpu", 2), "backend": "openvino"}
    values = {**time_values(4, 40.0), "executed_precision": "bf16"}
    return ResultRecord("resnet18", "time", config, "ok", values, None, 2.0, 2.0, "", "m-a")


@pytest.fixture(scope="module")
def perf():
    return performance(frames_from_records(all_records() + [bf16_record()], MACHINES, peaks=PEAKS))


def row(perf, machine, model, batch, device="cpu", backend="eager"):
    return perf[(perf["machine_id"] == machine) & (perf["model"] == model) & (perf["batch_size"] == batch)
                & (perf["device"] == device) & (perf["backend"] == backend)].iloc[0]


def test_fraction_of_peak_and_arithmetic_intensity_by_hand(perf):
    r = row(perf, "m-a", "resnet18", 2)  # 2 images in 36 ms, 1.8 G-MACs: 200 GFLOP/s of a 400 GFLOP/s peak
    assert r["gflops_per_s"] == pytest.approx(200.0)
    assert r["precision"] == "fp32" and r["peak_gflops_per_s"] == pytest.approx(400.0)
    assert r["fraction_of_peak"] == pytest.approx(0.5)
    # 2 x 1.8e9 x 2 FLOPs over 4 bytes x (11.7e6 weights + 2 x (3 x 224^2 input + 2 x 1000 activations))
    assert r["arithmetic_intensity"] == pytest.approx(7.2e9 / (4 * (11.7e6 + 2 * (3 * 224**2 + 2000))))
    assert r["bandwidth_gb_per_s"] == pytest.approx(20.0)
    gpu = row(perf, "m-b", "resnet50", 2, "cuda:0")  # threads: PyTorch's default; GPU peaks ignore threads
    assert gpu["fraction_of_peak"] == pytest.approx(2 * 4.1e9 * (2 / 0.006) / 8e12)
    assert math.isnan(row(perf, "m-b", "resnet18", 1)["fraction_of_peak"])  # no CPU peak stored for m-b
    converted = row(perf, "m-a", "resnet18", 4, backend="openvino")
    assert converted["precision"] == "bf16" and converted["peak_gflops_per_s"] == pytest.approx(800.0)
    assert converted["fraction_of_peak"] == pytest.approx(2 * 1.8e9 * 100 / 800e9)
    oom = row(perf, "m-a", "vgg16", 2)
    assert oom["status"] == "oom" and math.isnan(oom["fraction_of_peak"])


def test_cell_precision_and_bytes():
    assert cell_precision("fp32", "cuda:0", True) == "tf32" and cell_precision("fp32", "cpu", True) == "fp32"
    assert cell_precision("fp32", "cpu", None, "bf16") == "bf16" and cell_precision("fp16", "cpu", None, "") == "fp16"
    assert batch_bytes(10, 100, 2, 3, "fp16") == 2 * (10 + 3 * (12 + 200))


def test_threads_default_matches_the_most_threads_stored():
    peaks = [{"machine_id": "m-a", "device": "cpu", "precision": "fp32", "threads": t, "peak_flops": t * 100e9,
              "measured_at": 1.0, "estimate": estimate_dict(t * 100e9, threads=t)} for t in (1, 4)]
    records = [r for r in all_records() if r.machine_id == "m-a"]
    records = [ResultRecord(r.model, r.metric, {**r.config, "threads": None}, r.status, r.values, r.error,
                            r.started_at, r.finished_at, r.run_id, r.machine_id)
               if r.metric in ("time", "memory") else r for r in records]
    result = performance(frames_from_records(records, MACHINES, peaks=peaks))
    assert set(result["peak_gflops_per_s"].dropna()) == {400.0}


# --- figures and the report ----------------------------------------------------------------------------


def test_roofline_figures_draw_the_peak_and_the_memory_roof(perf):
    cpu = perf[(perf["machine_id"] == "m-a") & (perf["backend"] == "eager")]
    fig = figures.roofline(cpu)
    ax = fig.axes[0]
    assert ax.get_xscale() == ax.get_yscale() == "log"
    texts = [t.get_text() for t in ax.texts]
    assert any("fp32 peak 400 GFLOP/s" in t for t in texts) and any("20 GB/s" in t for t in texts)
    assert any(list(line.get_ydata()) == [400.0, 400.0] for line in ax.get_lines())
    plotly = interactive.roofline(cpu)
    names = [t.name for t in plotly.data]
    assert "fp32 peak 400 GFLOP/s" in names and any(n and n.startswith("memory roof 20") for n in names)
    assert plotly.layout.xaxis.type == "log" and plotly.layout.yaxis.type == "log"
    with pytest.raises(figures.EmptyFigureError):
        figures.roofline(cpu.assign(arithmetic_intensity=np.nan))


def test_report_has_a_roofline_per_setup_of_machines_with_peaks(tmp_path):
    path = fill_store(tmp_path / "s.sqlite")
    with Store(path) as store:
        for p in PEAKS:
            store.put_peak(p["machine_id"], {**p["estimate"], "threads": p["threads"], "device": p["device"],
                                             "precision": p["precision"], "peak_flops": p["peak_flops"]})
    assert len(load_frames(path).peaks) == 3
    result = build_report(path, tmp_path / "out", ReportOptions(formats=()))
    page = result.index.read_text()
    assert not result.skipped
    assert page.count('id="fig-roofline-') == 3  # m-a cpu; m-b cpu and cuda
    assert "Roofline: achieved FLOP/s against the peak" in page and "% of peak" in page
    assert "No peak stored for cpu fp32 2 threads eager" in page  # m-b has a CUDA peak only
    results = page.split('id="results"', 1)[1].split("</table>", 1)[0]
    assert 'data-sort="50.0"' in results  # resnet18 at batch 2 on alpha: 50% of peak


# --- the command ---------------------------------------------------------------------------------------


@pytest.fixture()
def wide_console(monkeypatch):
    monkeypatch.setattr(app_module.console, "width", 200)


def test_peak_command_spec_only_and_measured(tmp_path, wide_console, one_thread):
    runner = CliRunner()
    db = tmp_path / "peaks.sqlite"
    done = runner.invoke(app, ["peak", "--spec-only", "--precision", "fp32,int8", "--threads", "1,2", "--db",
                               str(db)], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    assert "stored 4 peak estimate(s)" in done.output and "FLOP/cycle/core" in done.output
    with Store(db) as store:
        assert {(p["precision"], p["threads"]) for p in store.peaks()} == {("fp32", 1), ("fp32", 2), ("int8", 1),
                                                                          ("int8", 2)}
    done = runner.invoke(app, ["peak", "--threads", "1", "--seconds", "0.05", "--no-store"], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    assert "matmul: torch.mm" in done.output and "stored" not in done.output
    bad = runner.invoke(app, ["peak", "--precision", "fp8", "--no-store"])
    assert bad.exit_code == 2 and "unknown precision" in bad.output
