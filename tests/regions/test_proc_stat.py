"""regions.proc_stat on real processes: a busy one's CPU seconds grow, a gone one is left out."""
from __future__ import annotations

import subprocess
import sys
import time

from regions.proc_stat import cpu_seconds


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
