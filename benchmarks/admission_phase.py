"""The saturation benchmark's last phase: one overload step with the cell's admission control on,
then the same step with it off (REGIONCTL_ADMISSION=off, a restarted cell), in the same run.

The rate is `overload_factor` x the measured plateau (the full-ranking capacity the ramp found),
all requests asking for full ranking: beyond what the cell can rank. Each step is the ramp's own
open-loop step (the same client, bounds and timeout); the rows print p99, errors, answers per
second and the tiers that served. Figures, not asserts: tests/chaos/test_overload_cell.py is the
test that fails when admission does not hold the SLO.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Callable

from serving.benchmarking import LoadStep

OFF = {"REGIONCTL_ADMISSION": "off"}


@dataclass(frozen=True)
class AdmissionRow:
    admission: str
    """"on" (the cell's default) or "off"."""
    step: LoadStep


def admission_rows(stack: Any, *, rate: float, duration_s: float, step: Callable[..., Any], settings: Any,
                   log: Callable[[str], None]) -> tuple[AdmissionRow, ...]:
    """On (the running cell), then off (restarted with REGIONCTL_ADMISSION=off), then the cell is
    restarted with its defaults again. `step` is the ramp's coroutine `_step(stack, rate=, duration_s=, settings=)`."""
    rows = []
    for admission, env in (("on", None), ("off", OFF)):
        if env is not None:
            stack.restart_cell(stack.bundle_dir, env)
            asyncio.run(step(stack, rate=max(rate * 0.2, 1.0), duration_s=2.0, settings=settings))  # warm-up
        result: LoadStep = asyncio.run(step(stack, rate=rate, duration_s=duration_s, settings=settings))
        log(f"admission {admission}: offered {rate:.1f}/s -> {result.achieved_qps:.1f}/s, p99 {result.p99_ms:.0f} ms, "
            f"errors {result.errors}, tiers {dict(result.tiers)}")
        rows.append(AdmissionRow(admission=admission, step=result))
        time.sleep(1.0)
    stack.restart_cell(stack.bundle_dir)
    return tuple(rows)


def rows_to_dict(rows: tuple[AdmissionRow, ...]) -> list[dict[str, Any]]:
    return [{"admission": r.admission, **r.step.to_dict()} for r in rows]


__all__ = ["AdmissionRow", "admission_rows", "rows_to_dict"]
