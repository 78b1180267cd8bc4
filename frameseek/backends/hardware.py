"""What the process may run on: the CPU's model and instruction sets, the CPUs it may use, and
where compiled artefacts and start-up measurements may be kept."""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Callable
from contextlib import AbstractContextManager
from functools import lru_cache
from pathlib import Path

from threadpoolctl import ThreadpoolController

CPUINFO = Path("/proc/cpuinfo")
PROC_CGROUP = Path("/proc/self/cgroup")
CGROUP_ROOT = Path("/sys/fs/cgroup")
CACHE_ENV = "FRAMESEEK_CACHE_DIR"


@lru_cache(maxsize=1)
def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (every core of a machine reports alike)."""
    fields: dict[str, str] = {}
    try:
        text = CPUINFO.read_text()
    except OSError:  # not Linux
        return fields
    for line in text.splitlines():
        if not line.strip():
            break
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def cpu_model() -> str:
    return _cpuinfo().get("model name") or platform.processor() or platform.machine() or "unknown"


def cpu_flags() -> frozenset[str]:
    return frozenset(_cpuinfo().get("flags", "").split())


def native_bf16(flags: frozenset[str]) -> str | None:
    """Which bf16 matrix instructions the CPU has: "amx" (AMX tiles, several times fp32's speed),
    "avx512" (AVX512-BF16 dot products: faster than fp32 on some CPUs only), or None."""
    if "amx_bf16" in flags:
        return "amx"
    if "avx512_bf16" in flags:
        return "avx512"
    return None


@lru_cache(maxsize=1)
def _thread_pools() -> ThreadpoolController:
    return ThreadpoolController()  # finds the loaded BLAS libraries once: a few ms


def blas_on_one_thread() -> AbstractContextManager[object]:
    """numpy's BLAS on one thread for a block: for the small products of a query (the R-MAC
    whitening, 42x512 by 512x512), whose two threads fight the CNN back end's, still awake
    after its forward: 13.6 ms for the product right after a forward against 2.4 ms 10 ms
    later, on a loaded machine (docs/performance.md)."""
    return _thread_pools().limit(limits=1, user_api="blas")


def usable_cpus(cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> int:
    """CPUs this process may actually use: its affinity mask, capped by a cgroup CPU quota (a
    container given 2 CPUs of a 64-core host would otherwise start 64 threads that fight)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup_root, proc_cgroup)
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return cpus


def cgroup_cpu_quota(cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP
                     ) -> float | None:
    """The tightest CPU quota (in CPUs) of this process's cgroup and its ancestors, v2
    (`cpu.max`) or v1 (`cpu.cfs_quota_us` / `cpu.cfs_period_us`); None where there is none."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    quotas: list[float] = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2: "0::/path", files under the unified mount
            quotas += _walk_up(cgroup_root, path, _v2_quota)
        elif "cpu" in controllers.split(","):
            quotas += _walk_up(cgroup_root / controllers, path, _v1_quota)
    return min(quotas, default=None)


def _walk_up(mount: Path, path: str, read: Callable[[Path], float | None]) -> list[float]:
    """A limit set on any ancestor cgroup binds too; inside a container the process's own
    cgroup is often shown as "/" and the mount's root holds the container's limit."""
    found = []
    directory = mount / path.lstrip("/")
    while True:
        quota = read(directory)
        if quota is not None:
            found.append(quota)
        if directory == mount or mount not in directory.parents:
            return found
        directory = directory.parent


def _v2_quota(directory: Path) -> float | None:
    try:
        quota, period = (directory / "cpu.max").read_text().split()
    except (OSError, ValueError):
        return None
    return None if quota == "max" else int(quota) / int(period)


def _v1_quota(directory: Path) -> float | None:
    try:
        quota = int((directory / "cpu.cfs_quota_us").read_text())
        period = int((directory / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota <= 0 or period <= 0 else quota / period


def cache_dir() -> Path:
    """Where frameseek may keep start-up artefacts: $FRAMESEEK_CACHE_DIR, else
    $XDG_CACHE_HOME/frameseek, else ~/.cache/frameseek. Nothing there is needed: a cache that
    cannot be written only costs start-up time."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "frameseek"
