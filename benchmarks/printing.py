"""How a benchmark report is shown: JSON (`--json`) or its tables and summary lines (rich)."""
from __future__ import annotations

import json
from typing import Any, Callable, Iterable


def print_report(report: Any, *, render: Callable[[Any], Iterable[Any]], summary_lines: Callable[[Any], Iterable[str]],
                 as_json: bool) -> None:
    from rich.console import Console

    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
        return
    console = Console()
    for renderable in render(report):
        console.print(renderable)
    for line in summary_lines(report):
        console.print(line)
