import json
import sys
import types

import numpy as np
import pytest
import torch

from dnnbench.measure import memory
from dnnbench.measure.memory import CpuMemory, CudaMemory, CudaPeak, PeakRSS, current_rss_bytes

MB = 1_000_000


def allocate_and_free(n_bytes):
    a = np.ones(n_bytes // 8)  # np.ones writes every page, so they are all resident
    del a


def test_current_rss_is_plausible():
    assert 10 * MB < current_rss_bytes() < 100_000 * MB


def test_peak_rss_catches_a_freed_allocation_and_resets():
    with PeakRSS() as first:
        allocate_and_free(200 * MB)
    if first.method != memory.METHOD_VMHWM:
        pytest.skip("the peak RSS cannot be reset here (/proc/self/clear_refs)")
    assert first.peak_bytes - first.start_bytes >= 190 * MB
    assert current_rss_bytes() < first.peak_bytes - 150 * MB  # it really was freed

    with PeakRSS() as second:
        allocate_and_free(1 * MB)
    assert second.method == memory.METHOD_VMHWM
    assert second.peak_bytes - second.start_bytes < 50 * MB  # the earlier 200 MB peak is gone


def test_peak_rss_falls_back_to_maxrss_when_it_cannot_reset(monkeypatch, tmp_path):
    monkeypatch.setattr(memory, "_CLEAR_REFS", str(tmp_path / "missing" / "clear_refs"))
    with PeakRSS() as p:
        pass
    assert p.method == memory.METHOD_MAXRSS
    assert p.peak_bytes >= p.start_bytes > 0


def test_cpu_memory_record():
    with PeakRSS() as p:
        allocate_and_free(20 * MB)
    m = CpuMemory.from_peak(p.start_bytes - 5 * MB, p)
    assert m.peak_rss_bytes == p.peak_bytes
    assert m.peak_above_baseline_bytes == p.peak_bytes - p.start_bytes + 5 * MB
    assert json.loads(json.dumps(m.to_dict())) == m.to_dict()
    assert p.result() == CpuMemory(p.start_bytes, p.peak_bytes, p.peak_bytes - p.start_bytes, p.method)
    assert p.result(p.start_bytes - 5 * MB) == m


def test_nvml_failure_never_raises(monkeypatch):
    def boom(*args):
        raise RuntimeError("no driver")

    fake = types.SimpleNamespace(nvmlInit=boom, nvmlShutdown=boom)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(uuid="1234"))
    value, note = memory._nvml_process_bytes(0)
    assert value is None and "no driver" in note


def test_nvml_reports_this_process_by_uuid(monkeypatch):
    import os

    seen = []
    fake = types.SimpleNamespace(
        nvmlInit=lambda: None,
        nvmlShutdown=lambda: None,
        nvmlDeviceGetHandleByUUID=lambda uuid: seen.append(uuid) or "handle",
        nvmlDeviceGetComputeRunningProcesses=lambda h: [
            types.SimpleNamespace(pid=os.getpid() + 1, usedGpuMemory=1),
            types.SimpleNamespace(pid=os.getpid(), usedGpuMemory=777 * MB),
        ],
    )
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(uuid="1234"))
    value, _ = memory._nvml_process_bytes(0)
    assert value == 777 * MB and seen == [b"GPU-1234"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_peak_sees_a_freed_tensor_and_resets():
    with CudaPeak("cuda") as first:
        x = torch.ones(64 * MB, device="cuda")  # 256 MB of float32
        del x
    assert first.max_allocated_bytes >= 256 * MB
    assert first.max_reserved_bytes >= first.max_allocated_bytes
    with CudaPeak("cuda") as second:
        torch.ones(1, device="cuda")
    assert second.max_allocated_bytes < 256 * MB
    m = first.result()
    assert m == CudaMemory.from_peak(first)
    assert m.device_name and json.loads(json.dumps(m.to_dict())) == m.to_dict()
    if m.nvml_process_bytes is not None:
        assert m.nvml_process_bytes > 0


def test_headline_memory_picks_cuda_tensors_then_cpu_rss_growth():
    from dnnbench.store.values import MemoryValue

    assert MemoryValue(max_allocated_bytes=5, peak_above_baseline_bytes=9).headline() == (5, "cuda_max_allocated")
    assert MemoryValue(peak_above_baseline_bytes=9).headline() == (9, "cpu_peak_rss_above_baseline")
    assert MemoryValue().headline() == (None, "")
