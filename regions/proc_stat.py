"""CPU time of local processes, from /proc/<pid>/stat.

    cpu_ticks_of_stat(text)   utime + stime (clock ticks, every thread) of one stat line; pure
    cpu_seconds(pids)         {pid: CPU seconds used so far} of those still alive

The benchmarks count a cell's CPU per request with it (benchmarks.cpu_accounting);
the overload game day reads how much CPU its survivor really got under its quota (chaos.actions'
limit_cell_cpu and restore_cell_cpu, chaos.overload.survivor_cpu).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from regions.errors import InputError


def cpu_ticks_of_stat(text: str) -> int:
    """utime + stime (clock ticks, all threads) from the text of /proc/<pid>/stat.

    The second field is the command name in parentheses and may itself hold spaces or ')', so the
    fields are counted after the LAST ')': state is field 3, utime field 14, stime field 15.
    """
    _, sep, rest = text.rpartition(")")
    fields = rest.split()
    if not sep or len(fields) < 13:
        raise InputError("stat", "not a /proc/<pid>/stat line: expected 'pid (comm) state ...' with at least 15 fields")
    try:
        return int(fields[11]) + int(fields[12])
    except ValueError as exc:
        raise InputError("stat", f"utime/stime are not integers: {fields[11]!r}, {fields[12]!r}") from exc


def cpu_seconds(pids: Iterable[int]) -> dict[int, float]:
    """CPU seconds each live process of `pids` has used (every thread); a process gone is left out."""
    tick = os.sysconf("SC_CLK_TCK")
    used: dict[int, float] = {}
    for pid in pids:
        try:
            used[int(pid)] = cpu_ticks_of_stat(Path(f"/proc/{int(pid)}/stat").read_text()) / tick
        except (FileNotFoundError, ProcessLookupError):
            continue
    return used


__all__ = ["cpu_seconds", "cpu_ticks_of_stat"]
