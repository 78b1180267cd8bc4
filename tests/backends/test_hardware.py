"""CPUs the process may use (affinity and cgroup quotas, on cgroup trees written here), the CPU's
bf16 instructions, where the cache lives, and numpy's BLAS held to one thread for a block."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from frameseek.backends.hardware import (
    blas_on_one_thread,
    cache_dir,
    cgroup_cpu_quota,
    cpu_model,
    native_bf16,
    usable_cpus,
)


def cgroup_tree(root: Path, proc_cgroup: str, files: dict[str, str]) -> Path:
    """A /sys/fs/cgroup-like tree under `root` and a /proc/self/cgroup naming the process's."""
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    proc = root / "proc-self-cgroup"
    proc.write_text(proc_cgroup)
    return proc


def test_v2_quota_of_the_process_cgroup_or_an_ancestor(tmp_path: Path) -> None:
    proc = cgroup_tree(tmp_path, "0::/user.slice/job\n", {
        "cpu.max": "max 100000\n",
        "user.slice/cpu.max": "300000 100000\n",  # 3 CPUs for the slice
        "user.slice/job/cpu.max": "max 100000\n",
    })
    assert cgroup_cpu_quota(tmp_path, proc) == 3.0
    (tmp_path / "user.slice/job/cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_quota(tmp_path, proc) == 1.5  # the tightest binds


def test_v1_quota_and_no_quota(tmp_path: Path) -> None:
    proc = cgroup_tree(tmp_path, "4:memory:/\n2:cpu,cpuacct:/docker/abc\n0::/\n", {
        "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "200000\n",
        "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
        "cpu,cpuacct/cpu.cfs_quota_us": "-1\n",  # unlimited
        "cpu,cpuacct/cpu.cfs_period_us": "100000\n",
    })
    assert cgroup_cpu_quota(tmp_path, proc) == 2.0
    unlimited = cgroup_tree(tmp_path / "none", "0::/\n", {"cpu.max": "max 100000\n"})
    assert cgroup_cpu_quota(tmp_path / "none", unlimited) is None
    assert cgroup_cpu_quota(tmp_path, tmp_path / "no-such-proc-file") is None


def test_usable_cpus_are_the_affinity_capped_by_the_quota(tmp_path: Path) -> None:
    affinity = len(os.sched_getaffinity(0))
    half = cgroup_tree(tmp_path, "0::/\n", {"cpu.max": "50000 100000\n"})
    assert usable_cpus(tmp_path, half) == 1  # half a CPU still gets one thread
    roomy = cgroup_tree(tmp_path / "roomy", "0::/\n", {"cpu.max": "6400000 100000\n"})
    assert usable_cpus(tmp_path / "roomy", roomy) == affinity
    assert 1 <= usable_cpus() <= affinity


def test_native_bf16_names_the_instructions() -> None:
    assert native_bf16(frozenset({"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"})) == "amx"
    assert native_bf16(frozenset({"avx512f", "avx512_bf16"})) == "avx512"
    assert native_bf16(frozenset({"avx2", "fma"})) is None
    assert cpu_model()  # /proc/cpuinfo's "model name", or what the platform says


def test_cache_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path
                                           ) -> None:
    monkeypatch.delenv("FRAMESEEK_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "frameseek"
    monkeypatch.setenv("FRAMESEEK_CACHE_DIR", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"


def numpy_blas_threads() -> int:
    """The threads of the BLAS numpy links (its wheel's own copy, in numpy.libs)."""
    (numpy_blas,) = [pool for pool in threadpool_info()
                     if pool["user_api"] == "blas" and "numpy" in pool["filepath"]]
    return numpy_blas["num_threads"]


def test_blas_runs_on_one_thread_in_the_block_only() -> None:
    np.ones((4, 4)) @ np.ones((4, 4))  # numpy's BLAS loaded
    before = numpy_blas_threads()
    with blas_on_one_thread():
        assert numpy_blas_threads() == 1
    assert numpy_blas_threads() == before
