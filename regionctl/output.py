"""How the CLI prints: rich tables for people, `--json` for scripts, and times people can read.

    console()            a rich Console; full width when stdout is not a terminal (piped output is
                         never folded at 80 columns: `eu-we│st`)
    print_json(doc)      one JSON document on stdout (sorted keys), for `--json`
    when(epoch)          "2026-12-01 22:40:05 UTC"
    in_words(seconds)    "4m 10s", "23h 59m"
    humanize(text)       epoch seconds inside free text (journal reasons) shown as UTC times

Exit codes every command keeps: 0 done; 1 done, and the answer is "no" (an infeasible capacity
plan, a drill pre-check failing, a failed drill or game day, a broken journal chain); 2 refused
(bad input, the control API refused the request, a store that does not exist).
"""
from __future__ import annotations

import datetime as dt
import json
import re
import sys
from typing import Any

import typer
from rich.console import Console

PIPED_WIDTH = 400
"""Columns used when stdout is not a terminal: wide enough that no table of ours folds a cell."""
_EPOCH = re.compile(r"(?<![\d.])(1[5-9]\d{8}|2\d{9})(\.\d+)?(?![\d.])")
"""Epoch seconds between 2017 and 2033 written out in a text (what the controller puts in reasons)."""


def console() -> Console:
    return Console() if sys.stdout.isatty() else Console(width=PIPED_WIDTH, soft_wrap=True)


def print_json(doc: Any) -> None:
    typer.echo(json.dumps(doc, indent=2, sort_keys=True, default=str))


def when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return dt.datetime.fromtimestamp(float(epoch), tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def in_words(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = max(0, int(round(seconds)))
    days, rest = divmod(s, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"


def humanize(text: str) -> str:
    return _EPOCH.sub(lambda m: when(float(m.group(0))), text)


__all__ = ["PIPED_WIDTH", "console", "humanize", "in_words", "print_json", "when"]
