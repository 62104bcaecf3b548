"""The saturation benchmark's last phase: one overload step with the cell's admission control on,
then the same step with it off (REGIONCTL_ADMISSION=off, a restarted cell), in the same run.

The cell is given `cores` of CPU, capped and weighted (regions.cpu_quota, a cgroup; needs root),
so that its size is known on a shared machine, and the rate is `overload_factor` x the capacity
model's full-ranking saturation of that size (capacity.model.predicted_saturation_qps with the
calibration), every request asking for full ranking: beyond what the cell can rank, within what
its cheaper tiers serve. Without cgroups the cell keeps its core and the rate is `overload_factor`
x the measured plateau (said in the notes). Each step is the ramp's own
open-loop step (the same client, bounds and timeout); the rows print p99, errors, answers per
second and the tiers that served. Figures, not asserts: tests/chaos/test_overload_cell.py is the
test that fails when admission does not hold the SLO.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Callable

from regions import cpu_quota
from serving.benchmarking import LoadStep

OFF = {"REGIONCTL_ADMISSION": "off"}


@dataclass(frozen=True)
class AdmissionRow:
    admission: str
    """"on" (the cell's default) or "off"."""
    step: LoadStep


GROUP = "bench-admission"


def admission_rows(stack: Any, *, rate: float, duration_s: float, step: Callable[..., Any], settings: Any,
                   log: Callable[[str], None], cores: float | None) -> tuple[AdmissionRow, ...]:
    """On, then off (a cell restarted with REGIONCTL_ADMISSION=off), each restarted fresh and put in
    the `cores` cgroup (None: no cgroup), then the cell is restarted with its defaults again.
    `step` is the ramp's coroutine `_step(stack, rate=, duration_s=, settings=)`."""
    rows = []
    try:
        for admission, env in (("on", None), ("off", OFF)):
            cell, _ = stack.restart_cell(stack.bundle_dir, env)
            if cores is not None:
                cpu_quota.limit_cpu(GROUP, [cell.pid], cores=cores)
            asyncio.run(step(stack, rate=max(rate * 0.2, 1.0), duration_s=2.0, settings=settings))  # warm-up
            result: LoadStep = asyncio.run(step(stack, rate=rate, duration_s=duration_s, settings=settings))
            log(f"admission {admission}: offered {rate:.1f}/s -> {result.achieved_qps:.1f}/s, p99 {result.p99_ms:.0f} ms, "
                f"errors {result.errors}, tiers {dict(result.tiers)}")
            rows.append(AdmissionRow(admission=admission, step=result))
            cpu_quota.release_cpu(GROUP)
            time.sleep(1.0)
    finally:
        cpu_quota.release_cpu(GROUP)
    stack.restart_cell(stack.bundle_dir)
    return tuple(rows)


def rows_to_dict(rows: tuple[AdmissionRow, ...]) -> list[dict[str, Any]]:
    return [{"admission": r.admission, **r.step.to_dict()} for r in rows]


__all__ = ["AdmissionRow", "admission_rows", "rows_to_dict"]
