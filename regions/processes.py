"""Starting and stopping local processes: redis-server, cells, controllers, the edge.

Only loopback addresses. Each started process is tracked by PID so that `stop` ends exactly
what was started and nothing else.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from regions.errors import TemporaryError

LOOPBACK = "127.0.0.1"


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now, and that this process has not
    handed out before (the kernel may offer a just-closed port again, and a topology built from
    several calls must not name one port twice)."""
    for _ in range(1000):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK, 0))
            port = int(sock.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise TemporaryError("no free loopback port found that was not handed out already")


def port_open(port: int, host: str = LOOPBACK, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(predicate: Callable[[], bool], *, timeout: float, interval: float = 0.05, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TemporaryError(f"timed out after {timeout:.1f}s waiting for {what}")


@dataclass
class ManagedProcess:
    """A child process we started, with its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.alive():
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(timeout=10)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `timeout` seconds."""
        if not self.alive():
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


def spawn(name: str, argv: Sequence[str], *, log_dir: Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> ManagedProcess:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    log = open(log_path, "ab")
    popen = subprocess.Popen(
        list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})}, cwd=str(cwd) if cwd else None, start_new_session=True,
    )
    log.close()
    return ManagedProcess(name=name, popen=popen, log_path=log_path)


def redis_server_binary() -> str:
    path = shutil.which("redis-server")
    if path is None:
        raise TemporaryError("redis-server is not installed; run `make setup` (apt-get install redis-server)", delay=0)
    return path


REDIS_APPENDFSYNC = "always"
"""Every acknowledged write is fsync'ed before the reply: an acknowledged event survives kill -9 and
power loss. `everysec` does not (see replication/interaction_log.py); measured cost ~0.3 ms per write."""


def redis_argv(*, port: int, data_dir: Path, host: str = LOOPBACK, appendfsync: str = REDIS_APPENDFSYNC) -> list[str]:
    """The command line of a region's redis-server: bound to `host` only, AOF on, no RDB snapshots.
    Protected mode (loopback clients only) stays on for loopback; a region's namespace address
    (netns mode, regions.netns) is reachable only on the stack's own bridge, and its peers and the
    host must connect from there."""
    return [
        redis_server_binary(), "--port", str(port), "--bind", host, "--dir", str(data_dir),
        "--appendonly", "yes", "--appendfsync", appendfsync, "--save", "",
        "--protected-mode", "yes" if host == LOOPBACK else "no",
        "--daemonize", "no",
    ]


def start_redis(*, port: int, data_dir: Path, name: str | None = None, appendfsync: str = REDIS_APPENDFSYNC) -> ManagedProcess:
    """A redis-server on loopback with AOF on (redis_argv)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = redis_argv(port=port, data_dir=data_dir, appendfsync=appendfsync)
    proc = spawn(name or f"redis-{port}", argv, log_dir=data_dir)
    try:
        wait_until(lambda: port_open(port) or not proc.alive(), timeout=10, what=f"redis-server on port {port}")
    except TemporaryError:
        proc.kill()
        raise
    if not proc.alive():
        raise TemporaryError(f"redis-server on port {port} exited at start:\n{proc.log_tail()}")
    return proc


def python_module_argv(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]
