"""`regions.stack.kill` returns only once the killed processes are gone, so a `restart` right after
starts them again instead of finding a dying process still "running" and skipping it (a CI run
lost its edge that way: killed, skipped by the restart, then dead, and the test waited 90 s for it).

The process here is slow to die on purpose: it has touched 1.5 GiB, which the kernel must unmap
after the SIGKILL, so its exit takes long enough for a restart that does not wait to see it alive.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from regions import stack
from regions.errors import TemporaryError
from regions.processes import free_port, port_open
from regions.topology import load_topology
from tests.stack_helpers import write_topology

SLOW_TO_DIE = """
import socket, sys, time
ballast = bytearray(1536 * 1024 * 1024)
for i in range(0, len(ballast), 4096):
    ballast[i] = 1
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", int(sys.argv[1])))
server.listen()
while True:
    time.sleep(1)
"""


@pytest.fixture
def slow_process(tmp_path: Path):
    state_dir = tmp_path / "state"
    topology_file = write_topology(tmp_path / "topology.toml")
    port = free_port()
    spec = stack.ProcessSpec(name="ballast", kind="edge", argv=(sys.executable, "-c", SLOW_TO_DIE, str(port)), port=port)
    proc = stack.start_process(spec, state_dir=state_dir)
    state = stack.StackState(processes={"ballast": proc}, topology_path=str(topology_file))
    state.save(state_dir)
    stack.wait_ready(proc, timeout=60)
    yield state_dir, topology_file, proc
    for left in stack.StackState.load(state_dir).processes.values():
        stack.stop_processes([left], timeout=5)


def test_kill_returns_once_the_process_is_gone_and_a_restart_right_after_starts_it(slow_process) -> None:
    state_dir, topology_file, first = slow_process
    assert stack.is_running(first)
    assert stack.kill(state_dir, names=("ballast",)) == ["ballast"]
    assert not stack.is_running(first), "kill returned while the process was still alive"
    restarted = stack.restart(load_topology(topology_file), state_dir, names=("ballast",))
    assert restarted == ["ballast"]
    again = stack.StackState.load(state_dir).processes["ballast"]
    assert again.pid != first.pid and stack.is_running(again) and port_open(again.port)


def test_kill_names_a_process_that_outlives_its_timeout(slow_process, monkeypatch: pytest.MonkeyPatch) -> None:
    """A process stuck in the kernel (uninterruptible sleep) outlives a SIGKILL: kill says which,
    instead of returning as if it were gone. Simulated by reading every process as still running."""
    state_dir, _, first = slow_process
    monkeypatch.setattr(stack, "is_running", lambda _proc: True)
    with pytest.raises(TemporaryError, match="ballast still running 0s after SIGKILL"):
        stack.kill(state_dir, names=("ballast",), timeout=0.0)
    monkeypatch.undo()
    stack.kill(state_dir, names=("ballast",))
    assert not stack.is_running(first)
