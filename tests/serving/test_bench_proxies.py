"""benchmarks.serving_bench's proxy phase and CPU readings, on a deliberately slow and a deliberately busy
"proxy": the measurements must show what was built into them (lower bounds only: no speed target here)."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import pytest

from benchmarks.serving_bench import cpu_ns, run_proxy_phase
from benchmarks.serving_peers import haproxy_config, rss_mb
from regions.errors import InputError


@pytest.fixture
def busy_child() -> Iterator[subprocess.Popen[bytes]]:
    """A real process that burns ~0.3 s of CPU, then sleeps."""
    code = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\ntime.sleep(60)\n"
    child = subprocess.Popen([sys.executable, "-c", code])
    yield child
    child.kill()
    child.wait(timeout=10)


def test_cpu_and_rss_of_a_busy_process(busy_child: subprocess.Popen[bytes]) -> None:
    time.sleep(1.5)  # it has burnt its CPU by now
    assert cpu_ns(busy_child.pid) >= 0.25e9
    assert rss_mb(busy_child.pid) > 1.0


def test_a_slow_proxy_shows_its_overhead_and_its_cpu(tmp_path: Path, busy_child: subprocess.Popen[bytes]) -> None:
    (tmp_path / "popularity.json").write_text(json.dumps([f"i{n}" for n in range(10)]))
    stack = SimpleNamespace(edge=SimpleNamespace(pid=busy_child.pid), haproxy=None, bundle_dir=tmp_path)

    def direct(product_id: str, _tier: str) -> tuple[str, float]:
        time.sleep(0.001)
        return "full", 1.0

    def slow_edge(product_id: str, _tier: str) -> tuple[str, float]:
        time.sleep(0.004)  # a "proxy" that adds 3 ms
        return "full", 1.0

    started = cpu_ns(busy_child.pid)
    (row,) = run_proxy_phase(stack, {"edge": slow_edge, "similar:edge": slow_edge, "similar:grpc": direct}, requests=40)  # type: ignore[arg-type]
    assert row.proxy == "edge" and row.wraps == "grpc" and row.errors == 0
    assert row.overhead[0] >= 2.5  # the 3 ms it adds, at p50
    burnt_ms = (cpu_ns(busy_child.pid) - started) / 1e6
    assert row.cpu_ms == pytest.approx(burnt_ms / 40, abs=0.05)  # what the process burnt during the phase, per request
    assert row.cpu_ms > 0.2  # the phase overlapped its busy loop: a proxy that burns CPU shows it


def test_haproxy_config_binds_loopback_and_refuses_bad_ports() -> None:
    text = haproxy_config(listen_port=8081, backend_port=9091)
    assert "bind 127.0.0.1:8081" in text and "server cell 127.0.0.1:9091" in text and "mode http" in text
    with pytest.raises(InputError, match="backend_port"):
        haproxy_config(listen_port=8081, backend_port=0)
