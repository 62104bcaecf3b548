"""regions.cpu_quota on the real kernel: a busy process limited to a tenth of a core uses about
that, is moved back and its group removed on release; bad input changes nothing."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from regions import cpu_quota
from regions.errors import InputError

needs_cgroups = pytest.mark.skipif(cpu_quota.unavailable() is not None, reason=f"{cpu_quota.unavailable()}")


def _cpu_s(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0


@needs_cgroups
def test_a_busy_process_gets_no_more_than_its_quota_and_is_released() -> None:
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        quota = cpu_quota.limit_cpu("test-quota", [busy.pid], cores=0.1)
        assert quota.cores == pytest.approx(0.1) and cpu_quota.quota_of("test-quota") == pytest.approx(0.1)
        time.sleep(0.3)
        before, t0 = _cpu_s(busy.pid), time.monotonic()
        time.sleep(2.0)
        used = (_cpu_s(busy.pid) - before) / (time.monotonic() - t0)
        assert used <= 0.16, f"used {used:.2f} cores under a 0.1 core quota"
        assert cpu_quota.throttled_s("test-quota") > 0
        assert cpu_quota.release_cpu("test-quota") == [busy.pid]
        assert cpu_quota.quota_of("test-quota") is None
        assert cpu_quota.release_cpu("test-quota") == []            # idempotent
    finally:
        cpu_quota.release_cpu("test-quota")
        busy.kill()
        busy.wait()


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"name": "ok", "pids": [1], "cores": 0.0}, "cores"),
    ({"name": "ok", "pids": [1], "cores": 100.0}, "cores"),
    ({"name": "ok", "pids": [1], "cores": True}, "cores"),
    ({"name": "ok", "pids": [], "cores": 0.5}, "pids"),
    ({"name": "../etc", "pids": [1], "cores": 0.5}, "name"),
])
def test_bad_input_is_refused_naming_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(InputError) as err:
        cpu_quota.limit_cpu(kwargs["name"], kwargs["pids"], cores=kwargs["cores"])
    assert err.value.field == field
