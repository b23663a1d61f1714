"""Analysis layer: tidy frames, derived indices, Pareto fronts, selection, machine labels and ratios.

The store is filled by hand with the values layout `dnnbench run` writes, with figures chosen so that every
expected answer (Pareto fronts, rankings, ratios) can be worked out on paper. The helpers here are also used by
test_report.py and test_report_cli.py.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from dnnbench.analysis import (
    Constraints,
    constraint_grid,
    default_machine,
    frames_from_records,
    load_frames,
    machine_label,
    machine_ratios,
    model_summary,
    pareto_front,
    pareto_mask,
    performance,
    resolve_machine,
    select_models,
)
from dnnbench.analysis.machines import build_machines
from dnnbench.errors import UsageError
from dnnbench.store import ResultRecord, Store

EVIL = "python:<script>alert(1)</script>"
MIB = 2**20
CPU_A = {"hostname": "alpha", "cpu_model": "Intel(R) Xeon(R) Gold 6230", "cpu_cores_logical": 8, "gpus": [],
         "memory_total_bytes": 64 * 2**30, "os": "Ubuntu 22.04", "arch": "x86_64"}
GPU_B = {"hostname": "beta", "cpu_model": "AMD EPYC 7763", "cpu_cores_logical": 16,
         "gpus": [{"index": 0, "name": "NVIDIA T4", "total_memory_bytes": 16 * 2**30}],
         "memory_total_bytes": 128 * 2**30, "os": "Debian 12", "arch": "x86_64"}
MACHINES = {"m-a": CPU_A, "m-b": GPU_B}

# model: (params, MACs per image)
COMPLEXITY = {"resnet18": (11.7e6, 1.8e9), "resnet50": (25.6e6, 4.1e9), "mobilenetv2": (3.5e6, 0.3e9),
              "squeezenet1_1": (1.2e6, 0.35e9), "vgg16": (138e6, 15.5e9), "shufflenet": (2.4e6, 0.14e9),
              EVIL: (1.0e6, 0.1e9)}
# machine A, cpu, 2 threads: model -> {batch: (median ms of the batch, memory MB)}; None = out of memory
A_CPU = {"resnet18": {1: (20, 100), 2: (36, 120)}, "resnet50": {1: (50, 200), 2: (90, 240)},
         "mobilenetv2": {1: (10, 50), 2: (18, 60)}, "squeezenet1_1": {1: (8, 20), 2: (14, 25)},
         "vgg16": {1: (120, 600), 2: None}, "shufflenet": {1: (9, 30), 2: (16, 35)}, EVIL: {1: (5, 10), 2: (9, 12)}}
# machine B: the same CPU config for two models, and CUDA for all
B_CPU = {"resnet18": {1: (10, 80)}, "mobilenetv2": {1: (4, 40)}}
B_CUDA = {"resnet18": {1: (2, 60), 2: (3, 70)}, "resnet50": {1: (4, 120), 2: (6, 140)},
          "mobilenetv2": {1: (2.5, 30), 2: (3, 35)}, "squeezenet1_1": {1: (1, 15), 2: (1.5, 18)},
          "vgg16": {1: (5, 700), 2: (8, 900)}, "shufflenet": {1: (1.5, 20), 2: (2, 22)},
          EVIL: {1: (0.5, 8), 2: (0.8, 9)}}
MEASURED_TOP1 = {"resnet50": (80.0, 95.0)}  # measured accuracy; the zoo reports 76.002 / 92.98


def cell_config(batch: int, device: str = "cpu", threads: int | None = 2) -> dict:
    config = {"device": device, "dtype": "fp32", "batch_size": batch, "input_size": 224, "threads": threads,
              "backend": "eager"}
    if device.startswith("cuda"):
        config["tf32"] = False
    return config


def complexity_record(model: str, params: float, macs: float, machine: str = "m-a", t: float = 1.0) -> ResultRecord:
    values = {"params": int(params), "trainable_params": int(params), "param_bytes": int(4 * params),
              "macs": int(macs), "flops": int(2 * macs), "conv_macs": int(macs), "matmul_macs": 0, "element_ops": 0,
              "activations": 1000, "output_elements": 2000, "buffers": 0, "buffer_bytes": 0, "batch_size": 1,
              "input_size": 224, "mode": "standard", "dtype": "float32", "model": model, "output_shape": [1, 1000],
              "counter": "torch.utils.flop_counter.FlopCounterMode (dispatch level, meta device)"}
    return ResultRecord(model, "complexity", {"input_size": 224, "batch_size": 1, "mode": "standard", "dtype": "fp32"},
                        "ok", values, None, t, t, "", machine)


def time_values(batch: int, median_ms: float, contended: bool = False) -> dict:
    median = median_ms / 1e3
    return {"batch_size": batch, "median_s": median, "ms_per_image": median_ms / batch,
            "images_per_s": batch / median, "samples_s": [median] * 5, "stop_reason": "converged", "converged": True,
            "stats": {"median": median, "mean": median, "min": median, "max": median, "std": 0.0, "cv": 0.0,
                      "n": 5, "p90": median, "p99": median, "ci_low": median, "ci_high": median, "ci_level": 0.95,
                      "ci_method": "order-statistics", "ci_half_width_rel": 0.01},
            "contention": {"contended": contended, "other_cores": 0.0, "threshold_cores": 0.25},
            "runtime": {"intra_op_threads": 2}, "build_s": 0.1, "cold_start_s": 0.2, "first_call_s": 0.1,
            "timed_s": 1.0, "timer": "perf_counter_ns", "warmup_iters": 3, "warmup_s": 1.0, "warmup_capped": False}


def memory_values(megabytes: float, cuda: bool) -> dict:
    used = int(megabytes * MIB)
    common = {"weight_bytes": used // 2, "analytic": {"total_peak_bytes": used, "weight_bytes": used // 2},
              "analytic_ratio": 1.0}
    if cuda:
        return {**common, "max_allocated_bytes": used, "max_reserved_bytes": used * 2, "nvml_process_bytes": None,
                "device_name": "NVIDIA T4", "baseline_rss_bytes": 700 * MIB}
    return {**common, "baseline_rss_bytes": 700 * MIB, "peak_rss_bytes": 700 * MIB + used,
            "peak_above_baseline_bytes": used, "method": "VmHWM of /proc/self/status"}


CONTENDED = {("m-a", "squeezenet1_1", 2)}  # timed while other processes used the CPU


def timed_records(table: dict, machine: str, device: str, threads: int | None, t: float = 2.0) -> list[ResultRecord]:
    records = []
    for model, by_batch in table.items():
        for batch, cell in by_batch.items():
            config = cell_config(batch, device, threads)
            if cell is None:
                error = f"out of memory at batch size {batch}: CUDA out of memory. Tried to allocate 2.00 GiB"
                records += [ResultRecord(model, metric, config, "oom", {}, error, t, t, "", machine)
                            for metric in ("time", "memory")]
                continue
            ms, mb = cell
            values = time_values(batch, ms, contended=(machine, model, batch) in CONTENDED)
            records.append(ResultRecord(model, "time", config, "ok", values, None, t, t, "", machine))
            records.append(ResultRecord(model, "memory", config, "ok", memory_values(mb, device != "cpu"), None, t, t,
                                        "", machine))
    return records


def accuracy_record(model: str, top1: float, top5: float, machine: str = "m-a", t: float = 3.0,
                    images: int = 50000, status: str = "ok") -> ResultRecord:
    """As `dnnbench accuracy` writes it: the cell is keyed by weights, preprocessing mode, dataset and limit."""
    config = {"weights": f"torchvision:{model}/IMAGENET1K_V1", "preprocessing": "weights",
              "dataset": {"name": "imagenet-1k-val", "images": 50000}, "limit": None if images == 50000 else images,
              "device": "cpu", "dtype": "fp32"}
    values = {"preprocessing": {"resize": 256, "crop": 224, "interpolation": "bilinear"}}
    if status == "ok":
        values.update({"top1": top1, "top5": top5, "n": images, "top1_correct": round(top1 * images / 100),
                       "top1_ci": [top1 - 0.4, top1 + 0.4], "ci_method": "wilson", "per_class": []})
    error = None if status == "ok" else "no pretrained weights exist for this model"
    return ResultRecord(model, "accuracy", config, status, values, error, t, t, "", machine)


def all_records() -> list[ResultRecord]:
    records = [complexity_record(m, p, macs) for m, (p, macs) in COMPLEXITY.items()]
    records += timed_records(A_CPU, "m-a", "cpu", 2)
    records += timed_records(B_CPU, "m-b", "cpu", 2)
    records += timed_records(B_CUDA, "m-b", "cuda:0", None)
    records += [accuracy_record(m, t1, t5) for m, (t1, t5) in MEASURED_TOP1.items()]
    records.append(accuracy_record("resnet50", 82.0, 96.0, t=9.0, images=500))  # later, on 500 images only
    records.append(accuracy_record("shufflenet", 0, 0, status="unavailable"))
    return records


def fill_store(path, records=None, machines=MACHINES) -> str:
    """A store at `path` holding `records` (default: the hand-made set) and the machines' fingerprints."""
    with Store(path) as store:
        for machine_id, fingerprint in machines.items():
            store.register_machine(machine_id, {**fingerprint, "machine_id": machine_id})
            run = store.start_run(machine_id, ["dnnbench", "run"], {}, {"torch_version": "2.4.0"})
            for record in records if records is not None else all_records():
                if record.machine_id == machine_id:
                    record.run_id = run
                    store.put_result(record)
            store.finish_run(run, "finished")
    return str(path)


@pytest.fixture(scope="module")
def frames():
    return frames_from_records(all_records(), MACHINES)


@pytest.fixture(scope="module")
def perf(frames):
    return performance(frames)


# --- tidy frames ---------------------------------------------------------------------------------------


def test_frames_are_tidy_and_keep_failed_cells(frames):
    assert len(frames.complexity) == len(COMPLEXITY)
    time = frames.time
    assert set(time.columns) >= {"machine_id", "machine", "model", "name", "family", "setup", "device", "dtype",
                                 "batch_size", "threads", "backend", "input_size", "status", "latency_ms",
                                 "ms_per_image", "images_per_s"}
    cells = sum(len(t) for t in A_CPU.values()) + sum(len(t) for t in B_CPU.values()) + sum(
        len(t) for t in B_CUDA.values())
    assert len(time) == len(frames.memory) == cells
    vgg = time[(time["model"] == "vgg16") & (time["batch_size"] == 2) & (time["machine_id"] == "m-a")].iloc[0]
    assert vgg["status"] == "oom" and "out of memory" in vgg["error"] and math.isnan(vgg["images_per_s"])
    resnet = time[(time["model"] == "resnet18") & (time["batch_size"] == 2) & (time["machine_id"] == "m-a")].iloc[0]
    assert resnet["latency_ms"] == pytest.approx(36) and resnet["ms_per_image"] == pytest.approx(18)
    assert resnet["setup"] == "cpu fp32 2 threads eager" and resnet["family"] == "ResNet"
    assert resnet["name"] == "ResNet18" and resnet["machine"] == "alpha (Intel(R) Xeon(R) Gold 6230)"
    assert time["contended"].sum() == 1
    cuda = time[time["device"] == "cuda:0"].iloc[0]
    assert cuda["setup"] == "cuda:0 fp32 default threads eager" and pd.isna(cuda["threads"])


def test_memory_index_is_cuda_peak_allocated_or_cpu_rss_above_baseline(frames):
    memory = frames.memory.set_index(["machine_id", "device", "model", "batch_size"])
    cpu = memory.loc[("m-a", "cpu", "resnet50", 1)]
    assert cpu["memory_kind"] == "cpu_peak_rss_above_baseline" and cpu["memory_bytes"] == 200 * MIB
    cuda = memory.loc[("m-b", "cuda:0", "resnet50", 1)]
    assert cuda["memory_kind"] == "cuda_max_allocated" and cuda["memory_bytes"] == 120 * MIB


def test_measured_accuracy_preferred_and_both_kept(frames):
    accuracy = frames.accuracy
    resnet50 = accuracy[accuracy["model"] == "resnet50"]
    assert sorted(resnet50["accuracy_source"]) == ["measured", "measured", "reported"]
    assert resnet50[resnet50["accuracy_source"] == "reported"]["top1"].item() == pytest.approx(76.002)
    assert accuracy[accuracy["model"] == "shufflenet"]["status"].tolist() == ["unavailable"]
    models = model_summary(frames).set_index("model")
    assert models.loc["resnet50", "top1"] == 80.0 and models.loc["resnet50", "accuracy_source"] == "measured"
    assert models.loc["resnet50", "measured_top1"] == 80.0  # the full validation set beats the later subset
    assert "50000 images" in models.loc["resnet50", "accuracy_detail"]
    assert models.loc["resnet50", "reported_top1"] == pytest.approx(76.002)
    assert models.loc["resnet18", "accuracy_source"] == "reported"
    assert models.loc["resnet18", "top1"] == pytest.approx(70.142)
    assert models.loc["shufflenet", "accuracy_source"] == "none" and math.isnan(models.loc["shufflenet", "top1"])
    assert models.loc[EVIL, "family"] == "custom" and models.loc[EVIL, "name"] == EVIL


def test_model_summary_derived_indices(frames):
    models = model_summary(frames).set_index("model")
    assert models.loc["resnet18", "accuracy_density"] == pytest.approx(70.142 / 11.7)
    assert models.loc["vgg16", "gmacs"] == pytest.approx(15.5)
    assert models.loc["vgg16", "params"] == 138e6


def test_performance_speed_memory_and_achieved_gflops(perf):
    row = perf[(perf["machine_id"] == "m-a") & (perf["model"] == "resnet18") & (perf["batch_size"] == 2)].iloc[0]
    assert row["images_per_s"] == pytest.approx(2 / 0.036)
    assert row["memory_mb"] == pytest.approx(120)
    assert row["gflops_per_s"] == pytest.approx(2 * 1.8e9 * (2 / 0.036) / 1e9)
    assert row["status"] == "ok" and row["top1"] == pytest.approx(70.142)
    oom = perf[(perf["machine_id"] == "m-a") & (perf["model"] == "vgg16") & (perf["batch_size"] == 2)].iloc[0]
    assert oom["status"] == "oom" and math.isnan(oom["gflops_per_s"]) and math.isnan(oom["memory_mb"])


# --- Pareto fronts -------------------------------------------------------------------------------------


def test_pareto_front_by_hand():
    df = pd.DataFrame({"model": list("abcdefg"),
                       "speed": [125, 100, 50, 20, 8.3, 100, np.nan],
                       "top1": [58.0, 71.9, 70.1, 80.0, 71.6, 71.9, 99.0]})
    # maximise both: a (fastest), b and its exact twin f, d (most accurate); c and e are dominated; g has no speed
    mask = pareto_mask(df, "speed", "top1", minimize_x=False)
    assert list(df["model"][mask]) == ["a", "b", "d", "f"]
    front = pareto_front(df, "speed", "top1", minimize_x=False)
    assert list(front["model"]) == ["a", "b", "f", "d"]  # fastest first
    # minimise x (e.g. memory): the smallest model is on the front, and so is the most accurate
    assert list(df["model"][pareto_mask(df, "speed", "top1")]) == ["d", "e"]


def test_pareto_front_on_measured_frames(perf):
    at1 = perf[(perf["machine_id"] == "m-a") & (perf["batch_size"] == 1)]
    front = set(at1["model"][pareto_mask(at1, "images_per_s", "top1", minimize_x=False)])
    # squeezenet is fastest; mobilenetv2 faster and more accurate than resnet18; resnet50 most accurate (measured)
    assert front == {"squeezenet1_1", "mobilenetv2", "resnet50"}


def test_pareto_of_nothing_is_empty():
    assert not pareto_mask(pd.DataFrame({"x": [np.nan], "y": [1.0]}), "x", "y").any()


# --- selection -----------------------------------------------------------------------------------------


def test_select_ranks_by_top1_then_speed_and_explains_exclusions(perf):
    limits = Constraints(batch_size=1, max_latency_ms=33, max_memory_mb=250)
    selection = select_models(perf, limits, top=3, machine_id="m-a")
    assert [c.model for c in selection.chosen] == ["mobilenetv2", "resnet18", "squeezenet1_1"]
    assert selection.eligible == 5  # + the two models without accuracy, ranked last (fastest first)
    rejected = {r.candidate.model: r for r in selection.rejected}
    assert list(rejected) == ["resnet50", "vgg16"]  # best top-1 first
    latency = rejected["resnet50"].violations
    assert [v.constraint for v in latency] == ["latency"]
    assert latency[0].excess == pytest.approx(17) and latency[0].relative_excess == pytest.approx(17 / 33)
    assert "latency 50.0 > 33.0 ms" in rejected["resnet50"].describe()
    assert [v.constraint for v in rejected["vgg16"].violations] == ["latency", "memory"]
    assert rejected["vgg16"].violations[1].excess == pytest.approx(350)


def test_select_min_top1_and_missing_accuracy(perf):
    selection = select_models(perf, Constraints(min_top1=70), top=None, machine_id="m-a")
    assert [c.model for c in selection.chosen] == ["resnet50", "mobilenetv2", "vgg16", "resnet18"]
    rejected = {r.candidate.model: r for r in selection.rejected}
    assert rejected["squeezenet1_1"].violations[0].excess == pytest.approx(70 - 58.25)
    assert rejected["shufflenet"].describe() == "no top-1 figure"


def test_select_reports_failed_cells_and_picks_the_fastest_setup(perf):
    selection = select_models(perf, Constraints(batch_size=2, max_latency_ms=1000), machine_id="m-a", top=None)
    vgg = next(r for r in selection.rejected if r.candidate.model == "vgg16")
    assert vgg.candidate.status == "oom" and vgg.describe().startswith("cell oom: out of memory at batch size 2")
    on_b = select_models(perf, Constraints(batch_size=1, max_latency_ms=100), machine_id="m-b", top=None)
    resnet18 = next(c for c in on_b.chosen if c.model == "resnet18")
    assert resnet18.setup.startswith("cuda:0") and resnet18.latency_ms == 2  # CUDA beats the CPU setup


def test_select_refuses_unmeasured_batch_size_and_bad_limits(perf):
    with pytest.raises(UsageError, match="batch sizes measured: 1, 2"):
        select_models(perf, Constraints(batch_size=64), machine_id="m-a")
    with pytest.raises(UsageError, match="positive"):
        Constraints(max_latency_ms=-1)
    with pytest.raises(UsageError, match="percentage"):
        Constraints(min_top1=150)


def test_constraint_grid(perf):
    grid = constraint_grid(perf, "m-a", fps_levels=(30, 60), memory_levels_mb=(60, 1000), top=5)
    cell = grid[(grid["max_memory_mb"] == 60) & (grid["min_images_per_s"] == 60)]
    assert list(cell["model"]) == ["mobilenetv2", "squeezenet1_1"]  # 100 and 125 images/s, <= 60 MB
    cell = grid[(grid["max_memory_mb"] == 1000) & (grid["min_images_per_s"] == 30)]
    assert list(cell["model"]) == ["mobilenetv2", "resnet18", "squeezenet1_1"]  # resnet50 is 20 images/s
    assert "shufflenet" not in set(grid["model"])  # no accuracy: not in the table


# --- machines ------------------------------------------------------------------------------------------


def test_machine_labels_and_selection(frames):
    assert machine_label(GPU_B) == "beta (AMD EPYC 7763 + NVIDIA T4)"
    assert machine_label({}, "0123456789") == "01234567 (unknown CPU)"
    machines = frames.machines
    assert resolve_machine("m-b", machines).machine_id == "m-b"
    assert resolve_machine("t4", machines).machine_id == "m-b"  # label fragment, any case
    assert resolve_machine("xeon", machines).machine_id == "m-a"
    with pytest.raises(UsageError, match="ambiguous"):
        resolve_machine("m-", machines)
    with pytest.raises(UsageError, match="no machine matches 'gamma'.*alpha"):
        resolve_machine("gamma", machines)
    with pytest.raises(UsageError, match="choose one with --machine"):
        default_machine(None, machines)
    assert default_machine(None, machines[:1]).machine_id == "m-a"


def test_twin_machines_get_distinct_labels():
    twins = build_machines({"aaaa1111": CPU_A, "bbbb2222": CPU_A})
    assert len({m.label for m in twins}) == 2 and twins[0].label.endswith("[aaaa1111]")


# --- cross-machine ratios ------------------------------------------------------------------------------


def test_machine_ratios_for_matching_configs(perf):
    ratios = machine_ratios(perf, "m-a", "m-b").set_index("model")
    assert set(ratios.index) == {"resnet18", "mobilenetv2"}  # the only cpu configs both ran
    assert ratios.loc["resnet18", "speed_ratio"] == pytest.approx(0.5)  # 50 vs 100 images/s
    assert ratios.loc["mobilenetv2", "speed_ratio"] == pytest.approx(0.4)  # 100 vs 250 images/s
    assert ratios.loc["resnet18", "memory_ratio"] == pytest.approx(100 / 80)
    loose = machine_ratios(perf, "m-b", "m-a", ignore=("device", "threads", "tf32"))
    cuda = loose[(loose["model"] == "resnet50") & (loose["batch_size"] == 1)].iloc[0]
    assert cuda["speed_ratio"] == pytest.approx(50 / 4) and cuda["setup_a"].startswith("cuda:0")
    with pytest.raises(UsageError, match="cannot ignore model"):
        machine_ratios(perf, "m-a", "m-b", ignore=("model",))


# --- stores --------------------------------------------------------------------------------------------


def test_load_frames_from_a_store(tmp_path):
    frames = load_frames(fill_store(tmp_path / "r.sqlite"))
    assert [m.machine_id for m in frames.machines] == ["m-a", "m-b"]
    assert frames.machines[1].software["torch_version"] == "2.4.0"
    assert len(frames.time) == len(frames_from_records(all_records(), MACHINES).time)


def test_missing_or_empty_store_is_a_clear_error(tmp_path):
    with pytest.raises(UsageError, match="no results store"):
        load_frames(tmp_path / "missing.sqlite")
    assert not (tmp_path / "missing.sqlite").exists()
    Store(tmp_path / "empty.sqlite").close()
    frames = load_frames(tmp_path / "empty.sqlite")
    with pytest.raises(UsageError, match="holds no results"):
        frames.require_data()
