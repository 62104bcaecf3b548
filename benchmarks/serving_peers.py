"""What the serving benchmark puts in front of its cell: the project's edge, and HAProxy as the peer.

    haproxy_config(...)   pure: a minimal HTTP-mode HAProxy config, one frontend, one backend server
    start_haproxy(...)    HAProxy (Debian's package; `make setup` installs it) on a free loopback port
    start_edge(...)       `regionctl edge` on a free loopback port, routing to the bench's one cell
    rss_mb(pid)           resident memory of a process (VmRSS of /proc/<pid>/status)

Both proxies sit in front of the SAME cell: the edge speaks HTTP in and gRPC to the cell (its
production path); HAProxy speaks HTTP in and HTTP to the cell's HTTP port (what a production
proxy would do with that API). Each one's overhead is measured against the direct call it wraps.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

from regions.errors import InputError, TemporaryError
from regions.processes import LOOPBACK, ManagedProcess, port_open, spawn, wait_until
from regions.topology import REPO_ROOT
from serving.benchmarking import rss_of_status


def haproxy_config(*, listen_port: int, backend_port: int, host: str = LOOPBACK) -> str:
    """HTTP mode, keep-alive both sides, no logging, one process and one thread (a like-for-like
    peer of the single-process edge)."""
    for name, port in (("listen_port", listen_port), ("backend_port", backend_port)):
        if not 0 < port < 65536:
            raise InputError(name, f"must be a TCP port 1..65535, got {port}")
    return "\n".join([
        "global",
        "  nbthread 1",
        "  maxconn 256",
        "defaults",
        "  mode http",
        "  option http-keep-alive",
        "  timeout connect 1s",
        "  timeout client 10s",
        "  timeout server 10s",
        "  timeout http-keep-alive 10s",
        "frontend bench",
        f"  bind {host}:{listen_port}",
        "  default_backend cell",
        "backend cell",
        "  http-reuse always",
        f"  server cell {host}:{backend_port}",
        "",
    ])


def haproxy_binary() -> str | None:
    return shutil.which("haproxy") or next((p for p in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy") if Path(p).exists()), None)


def start_haproxy(*, listen_port: int, backend_port: int, work_dir: Path) -> ManagedProcess:
    binary = haproxy_binary()
    if binary is None:
        raise TemporaryError("haproxy is not installed; `make setup` installs it (apt-get install haproxy)")
    work_dir.mkdir(parents=True, exist_ok=True)
    config = work_dir / "haproxy.cfg"
    config.write_text(haproxy_config(listen_port=listen_port, backend_port=backend_port))
    proc = spawn("haproxy", [binary, "-db", "-f", str(config)], log_dir=work_dir)
    wait_until(lambda: port_open(listen_port) or not proc.alive(), timeout=10, what=f"haproxy on port {listen_port}")
    if not proc.alive():
        raise TemporaryError(f"haproxy exited at start:\n{proc.log_tail()}")
    return proc


def start_edge(*, port: int, topology_file: Path, work_dir: Path) -> ManagedProcess:
    """The edge with an empty SQLite control store: it routes by the topology's default table."""
    work_dir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "regionctl.main", "edge", "--store", f"sqlite:///{work_dir / 'control.db'}",
            "--port", str(port), "--topology", str(topology_file)]
    proc = spawn("edge", argv, log_dir=work_dir, cwd=REPO_ROOT, env={"REGIONCTL_TOPOLOGY": str(topology_file)})
    wait_until(lambda: port_open(port) or not proc.alive(), timeout=60, what=f"the edge on port {port}")
    if not proc.alive():
        raise TemporaryError(f"the edge exited at start:\n{proc.log_tail()}")
    return proc


def rss_mb(pid: int) -> float:
    return rss_of_status(Path(f"/proc/{pid}/status").read_text())
