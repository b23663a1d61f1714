import dataclasses
import json
import os
import re
import subprocess
import sys
import time

import pytest
import torch

from dnnbench.env import (
    GpuInfo,
    collect_machine,
    collect_runtime,
    collect_software,
    detect_allocator,
)
from dnnbench.env import fingerprint as fp

MAPS = """\
55d0c0a00000-55d0c0a2e000 r--p 00000000 08:01 1048 /usr/bin/python3.11
7f1c2a000000-7f1c2a021000 rw-p 00000000 00:00 0
7f1c2b200000-7f1c2b26b000 r-xp 00000000 08:01 2211 /usr/lib/x86_64-linux-gnu/libc.so.6
7f1c2b400000-7f1c2b4c1000 r-xp 00000000 08:01 3301 {lib}
7ffd5e1f0000-7ffd5e211000 rw-p 00000000 00:00 0                          [stack]
"""

JETSON_CPUINFO = """\
processor	: 0
BogoMIPS	: 62.50
Features	: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer	: 0x41
CPU architecture: 8
CPU part	: 0xd42

processor	: 1
Features	: fp asimd
CPU implementer	: 0x41
"""


def _runtime_in_subprocess(env_extra: dict[str, str], before: str = "") -> dict:
    code = (f"import json, torch\n{before}\nfrom dnnbench.env import collect_runtime\n"
            "print(json.dumps(collect_runtime().to_dict()))")
    env = {**os.environ, **env_extra}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout.splitlines()[-1])


def test_machine_fields_on_this_host():
    m = collect_machine()
    assert m.hostname and m.os and m.kernel and m.arch
    assert m.cpu_model
    assert m.cpu_cores_logical >= 1
    assert m.memory_total_bytes > 0
    if sys.platform == "linux":
        assert 1 <= m.cpu_affinity_count <= m.cpu_cores_logical
        assert m.cpu_vendor
        assert m.cpu_flags is not None and set(m.cpu_flags) <= fp.RELEVANT_CPU_FLAGS
    if not torch.cuda.is_available():
        assert m.gpus == ()
        assert m.cuda_driver_version is None


def test_machine_id_stable_and_hardware_sensitive():
    m = collect_machine()
    assert re.fullmatch(r"[0-9a-f]{16}", m.machine_id)
    assert collect_machine().machine_id == m.machine_id
    assert dataclasses.replace(m, cpu_model="Other CPU").machine_id != m.machine_id
    assert dataclasses.replace(m, cpu_cores_logical=m.cpu_cores_logical + 1).machine_id != m.machine_id
    assert dataclasses.replace(m, memory_total_bytes=m.memory_total_bytes + 2 * fp.GIB).machine_id != m.machine_id
    gpu = GpuInfo(0, "NVIDIA H100", 80 * fp.GIB, "9.0", 132, None)
    assert dataclasses.replace(m, gpus=(gpu,)).machine_id != m.machine_id
    # Software-ish fields and a few MB of memory drift do not make it another machine.
    assert dataclasses.replace(m, kernel="0.0-other", cuda_driver_version="1.0").machine_id == m.machine_id
    assert dataclasses.replace(m, memory_total_bytes=m.memory_total_bytes + 1024).machine_id == m.machine_id


def test_to_dict_is_json_serialisable():
    m, s, r = collect_machine(), collect_software(), collect_runtime()
    gpu = GpuInfo(0, "NVIDIA H100", 80 * fp.GIB, "9.0", 132, "GPU-abc")
    for obj in (m, dataclasses.replace(m, gpus=(gpu,)), s, r):
        d = json.loads(json.dumps(obj.to_dict()))
        assert d
    assert json.loads(json.dumps(m.to_dict()))["machine_id"] == m.machine_id


def test_collection_is_cheap():
    t = time.perf_counter()
    collect_machine(), collect_software(), collect_runtime()
    assert time.perf_counter() - t < 0.5


def test_failing_probe_yields_none(monkeypatch):
    import psutil

    def boom(*a, **k):
        raise RuntimeError("probe failed")

    monkeypatch.setattr(psutil, "virtual_memory", boom)
    monkeypatch.setattr(fp, "_read", boom)
    m = collect_machine()
    assert m.memory_total_bytes is None
    assert m.cpu_flags is None
    assert m.cpu_cores_logical >= 1
    monkeypatch.setattr(torch, "get_num_threads", boom)
    assert collect_runtime().intra_op_threads is None


def test_software_versions():
    s = collect_software()
    assert s.torch_version == torch.__version__.split("+")[0]
    assert s.torchvision_version and s.timm_version and s.numpy_version
    assert s.torch_cuda_version == torch.version.cuda
    assert s.dnnbench_version
    assert s.git_revision is None or re.fullmatch(r"[0-9a-f]{40}", s.git_revision)


def test_git_state(tmp_path):
    assert fp.git_state(tmp_path) == (None, None)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "init", "-q", str(tmp_path)], check=True)
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("x = 1\n")
    # Inside a repository that does not track our source: not our revision.
    assert fp.git_state(pkg) == (None, None)
    subprocess.run([*git, "add", "."], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=tmp_path, check=True)
    rev, dirty = fp.git_state(pkg)
    assert re.fullmatch(r"[0-9a-f]{40}", rev) and dirty is False
    (pkg / "__init__.py").write_text("x = 2\n")
    assert fp.git_state(pkg) == (rev, True)


@pytest.mark.parametrize(
    "lib, expected",
    [
        ("/usr/lib/x86_64-linux-gnu/libtcmalloc.so.4.5.9", "tcmalloc"),
        ("/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4", "tcmalloc"),
        ("/opt/conda/lib/libjemalloc.so.2", "jemalloc"),
        ("/usr/local/lib/libmimalloc.so.2.1", "mimalloc"),
        ("/usr/lib/x86_64-linux-gnu/libm.so.6", "glibc"),
    ],
)
def test_detect_allocator_from_maps(lib, expected):
    assert detect_allocator(MAPS.format(lib=lib)) == expected


def test_detect_allocator_preload_wins_and_default():
    maps = MAPS.format(lib="/usr/lib/libjemalloc.so.2")
    assert detect_allocator(maps, "/usr/lib/libtcmalloc.so.4") == "tcmalloc"
    assert detect_allocator(MAPS.format(lib="/lib/libz.so"), "", default="system") == "system"
    assert detect_allocator("", "libfoo.so:/x/libmimalloc.so") == "mimalloc"


def test_runtime_in_this_process():
    r = collect_runtime()
    assert r.intra_op_threads == torch.get_num_threads()
    assert r.float32_matmul_precision == torch.get_float32_matmul_precision()
    if sys.platform == "linux" and "LD_PRELOAD" not in os.environ:
        assert r.allocator in {"glibc", "system", "tcmalloc", "jemalloc", "mimalloc"}


def test_runtime_threads_and_malloc_env_in_subprocess():
    r = _runtime_in_subprocess(
        {"MALLOC_TOP_PAD_": "12345", "TCMALLOC_RELEASE_RATE": "0", "OMP_NUM_THREADS": "1",
         "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"},
        before="torch.set_num_threads(1); torch.set_num_interop_threads(1); torch.set_float32_matmul_precision('high')",
    )
    assert r["intra_op_threads"] == 1
    assert r["inter_op_threads"] == 1
    assert r["omp_num_threads"] == "1"
    assert r["float32_matmul_precision"] == "high"
    assert r["malloc_env"]["MALLOC_TOP_PAD_"] == "12345"
    assert r["malloc_env"]["TCMALLOC_RELEASE_RATE"] == "0"
    assert "OMP_NUM_THREADS" not in r["malloc_env"]
    assert r["cuda_alloc_conf"] == "expandable_segments:True"


def test_arm_cpuinfo_parsing():
    info = fp.parse_cpuinfo(JETSON_CPUINFO)
    assert fp._cpu_vendor(info) == "ARM"
    assert fp._cpu_flags(info) == ("asimd", "asimddp", "asimdhp")
    assert fp._cpu_model(info)  # board name, processor() or machine(): never empty


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_fingerprint():
    m = collect_machine()
    assert len(m.gpus) == torch.cuda.device_count() >= 1
    g = m.gpus[0]
    assert g.name and g.total_memory_bytes > 0 and g.multiprocessor_count > 0
    assert re.fullmatch(r"\d+\.\d+", g.compute_capability)
    assert m.cuda_driver_version
