"""The game-day table: one row of cells per game day from `gameday_io.summarize_run`'s summary (pure).
`regionctl gameday-table` prints it in the terminal, or, with `--markdown`, as the Markdown table
docs/gamedays.md carries: the documented figures are the tool's output, not retyped."""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

HEADERS = ("experiment", "availability RTO s", "quality RTO s", "first-attempt fail %", "RPO s", "lost/acked",
           "empty", "during the fault: success, p99, tiers", "steered after s", "hypothesis before/after",
           "load: achieved req/s, p99 lag", "verdict")


def _num(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2f}"


def _rto(seconds: Optional[float], status: Optional[str]) -> str:
    return _num(seconds) if status in (None, "met") else str(status)


def _tier_mix(tiers: Mapping[str, int]) -> str:
    total = max(sum(tiers.values()), 1)
    return ", ".join(f"{k} {v / total:.0%}" for k, v in sorted(tiers.items(), key=lambda kv: -kv[1]))


def row_cells(row: Mapping[str, Any]) -> list[str]:
    """The cells of one game day's row, in HEADERS order; the verdict cell ends with the reasons of
    an invalid run, one per line."""
    during = row["during_fault"] or {}
    hyp = row["hypothesis"]
    rate = row["first_attempt_failure_rate"]
    achieved, lag = row.get("achieved_rate"), row.get("p99_schedule_lag_ms")
    return [row["experiment"], _rto(row["rto_s"], row["rto_status"]),
            _rto(row["quality_rto_s"], row["quality_rto_status"]), "-" if rate is None else f"{100 * rate:.2f}",
            _num(row["rpo_s"]), "-" if row["lost"] is None else f"{row['lost']}/{row['acknowledged']}",
            str(row["empty_slates"]),
            (f"{during['success_rate']:.1%}, {during['p99_ms']:.0f} ms; " if during.get("requests") else "")
            + _tier_mix(during.get("tiers") or {}),
            _num(row["weights_changed_after_s"]), f"{hyp['before']}/{hyp['after']}",
            "-" if achieved is None else f"{achieved:.1f}, {lag or 0:.0f} ms",
            row["verdict"] + "".join(f"\n{r}" for r in row["invalid_reasons"])]


def markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows as a Markdown table (a cell's line breaks become '; ', pipes are escaped)."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", "; ")

    lines = ["| " + " | ".join(HEADERS) + " |", "| " + " | ".join("---" for _ in HEADERS) + " |"]
    lines += ["| " + " | ".join(cell(c) for c in row_cells(r)) + " |" for r in rows]
    return "\n".join(lines) + "\n"


__all__ = ["HEADERS", "markdown", "row_cells"]
