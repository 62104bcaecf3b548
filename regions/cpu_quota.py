"""A CPU quota on local processes (a Linux cgroup's CFS bandwidth): a cell the size of a fraction of a core.

    quota = limit_cpu("cell-us-west", [pid], cores=0.25)    # at most a quarter of one core
    release_cpu("cell-us-west")                              # back where they were; the group is removed

Used to give a survivor cell a known full-ranking capacity for the overload game day and tests:
on a shared 2-core machine that capacity is otherwise whatever the neighbours leave, and the
survivors' overload would need more load than one machine can generate alongside them. The CFS
period is 10 ms (not the kernel's 100 ms), so a process that used its share waits at most 10 ms
minus its quota for the next period: throttling adds milliseconds, not a tenth of a second.
The group also gets a high scheduler weight (cpu.shares 8192 in v1, cpu.weight 800 in v2, 8x a
default process's): on a machine shared with other work the quota is then what the processes
get, not only what they may get, so the cell's size is known ("half a core" means half a core).

cgroup v1 (`/sys/fs/cgroup/cpu`, cpu.cfs_quota_us) and v2 (`/sys/fs/cgroup`, cpu.max) are both
handled; either needs root. `unavailable()` says why a quota cannot be set here (None when it can).
Groups are named `shopnow-<name>`; a process that exits leaves its group empty, and `release_cpu`
removes it all the same.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from regions.errors import InputError, PermanentError

V1_ROOT = Path("/sys/fs/cgroup/cpu")
V2_ROOT = Path("/sys/fs/cgroup")
PERIOD_US = 10_000
"""CFS period: 10 ms (see the module docstring)."""
MIN_CORES, MAX_CORES = 0.05, 64.0
V1_SHARES, V2_WEIGHT = 8192, 800
"""The group's scheduler weight, 8x a default process's (see the module docstring)."""


@dataclass(frozen=True)
class CpuQuota:
    name: str
    cores: float
    pids: tuple[int, ...]
    path: Path


def _v2() -> bool:
    return (V2_ROOT / "cgroup.controllers").exists()


def _root() -> Path:
    return V2_ROOT if _v2() else V1_ROOT


def unavailable() -> str | None:
    """Why no quota can be set on this machine, or None."""
    if os.geteuid() != 0:
        return "a CPU quota needs root (a cgroup is created under /sys/fs/cgroup)"
    if _v2():
        if "cpu" not in (V2_ROOT / "cgroup.controllers").read_text().split():
            return "cgroup v2 without the cpu controller"
        return None
    if not (V1_ROOT / "cpu.cfs_quota_us").exists():
        return f"no cgroup cpu controller at {V1_ROOT} or {V2_ROOT}"
    return None


def _group(name: str) -> Path:
    if not name or not all(c.isalnum() or c in "-_" for c in name):
        raise InputError("name", f"{name!r} is not allowed; use letters, digits, '-' and '_'")
    return _root() / f"shopnow-{name}"


def limit_cpu(name: str, pids: Iterable[int], *, cores: float) -> CpuQuota:
    """Put `pids` (every thread of each) in the group `name`, limited to `cores` cores."""
    path = _group(name)
    if isinstance(cores, bool) or not isinstance(cores, (int, float)) or not MIN_CORES <= cores <= MAX_CORES:
        raise InputError("cores", f"{cores!r} is not allowed; give a number of cores in [{MIN_CORES:g}, {MAX_CORES:g}]")
    pids = tuple(int(p) for p in pids)
    if not pids:
        raise InputError("pids", "give at least one process id")
    reason = unavailable()
    if reason:
        raise PermanentError(f"cannot limit the CPU of {name}: {reason}")
    path.mkdir(exist_ok=True)
    quota_us = max(int(cores * PERIOD_US), 1000)
    if _v2():
        subtree = V2_ROOT / "cgroup.subtree_control"
        if "cpu" not in subtree.read_text().split():
            subtree.write_text("+cpu")
        (path / "cpu.max").write_text(f"{quota_us} {PERIOD_US}")
        (path / "cpu.weight").write_text(str(V2_WEIGHT))
    else:
        (path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (path / "cpu.cfs_quota_us").write_text(str(quota_us))
        (path / "cpu.shares").write_text(str(V1_SHARES))
    for pid in pids:
        (path / "cgroup.procs").write_text(str(pid))
    return CpuQuota(name=name, cores=quota_us / PERIOD_US, pids=pids, path=path)


def release_cpu(name: str) -> list[int]:
    """Move the group's processes back to the root group and remove it; the pids moved ([] when
    there was no such group: idempotent)."""
    path = _group(name)
    if not path.exists():
        return []
    moved = [int(p) for p in (path / "cgroup.procs").read_text().split()]
    for pid in moved:
        try:
            (_root() / "cgroup.procs").write_text(str(pid))
        except ProcessLookupError:
            pass  # exited meanwhile
    path.rmdir()
    return moved


def quota_of(name: str) -> float | None:
    """The group's quota in cores (None: no such group, or no limit)."""
    path = _group(name)
    if not path.exists():
        return None
    if _v2():
        quota, period = (path / "cpu.max").read_text().split()
        return None if quota == "max" else int(quota) / int(period)
    quota_us = int((path / "cpu.cfs_quota_us").read_text())
    return None if quota_us < 0 else quota_us / int((path / "cpu.cfs_period_us").read_text())


def throttled_s(name: str) -> float:
    """Seconds the group's processes were held back by the quota so far (0 when unknown)."""
    path = _group(name)
    try:
        for line in (path / "cpu.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "throttled_time":      # v1, nanoseconds
                return int(value) / 1e9
            if key == "throttled_usec":      # v2, microseconds
                return int(value) / 1e6
    except OSError:
        pass
    return 0.0


__all__ = ["CpuQuota", "limit_cpu", "quota_of", "release_cpu", "throttled_s", "unavailable"]
