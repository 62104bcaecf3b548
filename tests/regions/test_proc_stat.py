"""regions.proc_stat: the stat-line parser, and on real processes: a busy one's CPU seconds grow,
a gone one is left out."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from regions.errors import InputError
from regions.proc_stat import cpu_seconds, cpu_ticks_of_stat

STAT = "4242 (python3 -m regionctl.main) S 1 4242 4242 0 -1 4194560 1234 0 0 0 731 42 0 0 20 0 9 0 123 456 789"


@pytest.mark.parametrize(("text", "expected"), [
    (STAT, 773),
    ("7 (odd) name)) R 1 7 7 0 -1 0 0 0 0 0 10 5 0 0 20 0 1 0 1 1 1", 15),  # ')' inside the command name
])
def test_cpu_ticks_of_stat(text: str, expected: int) -> None:
    assert cpu_ticks_of_stat(text) == expected


@pytest.mark.parametrize("text", ["", "4242 (x) S 1 2", "4242 (x) S 1 4242 4242 0 -1 0 0 0 0 0 ab 42 0 0 20"])
def test_cpu_ticks_of_stat_refuses_other_text(text: str) -> None:
    with pytest.raises(InputError):
        cpu_ticks_of_stat(text)


def test_a_busy_process_uses_cpu_and_a_gone_one_is_left_out() -> None:
    busy = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 30\nwhile time.time() < end: pass"])
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    try:
        first = cpu_seconds([busy.pid, gone.pid])
        assert set(first) == {busy.pid}
        deadline = time.monotonic() + 20
        while cpu_seconds([busy.pid])[busy.pid] < first[busy.pid] + 0.2:   # ticks are 10 ms: 0.2 s is 20 of them
            assert time.monotonic() < deadline, "a busy loop used no CPU in 20 s"
            time.sleep(0.05)
    finally:
        busy.kill()
        busy.wait()
    assert cpu_seconds([busy.pid]) == {}
