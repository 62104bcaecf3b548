"""Process CPU accounting and pinning for the benchmarks (/proc stat and schedstat, sched_setaffinity)."""
from __future__ import annotations

import os
import platform
from pathlib import Path

from regions.proc_stat import cpu_ticks_of_stat
from serving.benchmarking import core_ticks_of_stat, cpu_ns_of_schedstat


def machine_description(cell_cpus: set[int]) -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{model}, {os.cpu_count()} vCPU, cell pinned to CPU {','.join(map(str, sorted(cell_cpus)))}, "
            f"Linux {platform.release()}, Python {platform.python_version()}")


def cpu_ticks(pid: int) -> int:
    return cpu_ticks_of_stat(Path(f"/proc/{pid}/stat").read_text())


def cpu_ns(pid: int) -> int:
    """CPU time of every live thread of `pid`, in ns (schedstat: finer than the 10 ms ticks of stat)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += cpu_ns_of_schedstat((task / "schedstat").read_text())
        except (FileNotFoundError, ProcessLookupError):
            pass  # a thread that ended meanwhile
    return total


def core_ticks(cpus: set[int]) -> tuple[int, int]:
    """(busy, total) ticks of the given CPUs, all processes together."""
    text = Path("/proc/stat").read_text()
    pairs = [core_ticks_of_stat(text, cpu) for cpu in sorted(cpus)]
    return sum(b for b, _ in pairs), sum(t for _, t in pairs)


def pin(pid: int, cpus: set[int]) -> None:
    """Pin every thread of `pid` (threads started later inherit the mask)."""
    tasks = Path(f"/proc/{pid}/task")
    for tid in ([int(t.name) for t in tasks.iterdir()] if tasks.exists() else [pid]):
        try:
            os.sched_setaffinity(tid, cpus)
        except ProcessLookupError:
            pass


def split_cpus() -> tuple[set[int], set[int]]:
    """(cell cpus, client cpus): one core each when there are two, else both on the same one."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) >= 2:
        return {available[-1]}, {available[0]}
    return {available[0]}, {available[0]}
