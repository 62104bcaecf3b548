"""Prometheus's own checkers (Debian's `prometheus` package: promtool) run on our metrics and rules.

    check_metrics(text)        `promtool check metrics`: the exposition lint (names, suffixes, help)
    check_rules(*files)        `promtool check rules`
    test_rules(*files)         `promtool test rules` (unit tests of alerts over synthetic series)

Each returns a PromtoolResult (ok, the output); PromtoolMissing names how to install it.
"""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from regions.errors import PermanentError

TIMEOUT_S = 60.0
"""promtool answers in well under a second; a minute covers a loaded CI machine."""


class PromtoolMissing(PermanentError):
    """promtool is not on the PATH."""


@dataclass(frozen=True)
class PromtoolResult:
    ok: bool
    output: str


def installed(binary: str) -> str:
    """The path of `binary` from Debian's prometheus package (promtool, prometheus); PromtoolMissing if absent."""
    found = shutil.which(binary)
    if not found:
        raise PromtoolMissing(f"{binary} is not installed; `make setup` installs Debian's prometheus package "
                              "(apt-get install -y prometheus)")
    return found


def promtool() -> str:
    return installed("promtool")


def _run(args: list[str], *, stdin: str | None = None) -> PromtoolResult:
    done = subprocess.run([promtool(), *args], input=stdin, capture_output=True, text=True, timeout=TIMEOUT_S,
                          check=False)
    return PromtoolResult(ok=done.returncode == 0, output=(done.stdout + done.stderr).strip())


def check_metrics(text: str) -> PromtoolResult:
    """Lint a /metrics body. promtool exits 0 even for some lint findings, so any output is a finding."""
    result = _run(["check", "metrics"], stdin=text)
    return PromtoolResult(ok=result.ok and not result.output, output=result.output)


def check_rules(*files: Path) -> PromtoolResult:
    return _run(["check", "rules", *map(str, files)])


def test_rules(*files: Path) -> PromtoolResult:
    return _run(["test", "rules", *map(str, files)])


test_rules.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


__all__ = ["PromtoolMissing", "PromtoolResult", "check_metrics", "check_rules", "installed", "promtool", "test_rules"]
