"""A local etcd cluster on loopback: the command line of each member, start, stop, leader.

Debian's `etcd-server` package (3.4) gives `/usr/bin/etcd`; `make setup` installs it when
missing, as it does redis-server. Each member listens on two loopback ports (client, peer) and
keeps its data in `<data_root>/<name>`. `regions/stack.py` starts the members of the local stack
from `member_argv` (so their PIDs land in stack.json with the other processes); tests and game
days use `start_cluster`, which does the same in-process.

Timing: etcd's defaults (heartbeat 100 ms, election 1000 ms) are kept. A member that loses its
leader elects a new one within about 1-2 s; lease TTLs are whole seconds of at least 2 s
(etcd's minimum is 1.5 x the election timeout).
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import httpx

from regions.errors import InputError, TemporaryError
from regions.processes import LOOPBACK, ManagedProcess, free_port, port_open, spawn, wait_until

CLUSTER_TOKEN = "shopnow-local"
"""Members of one cluster share this token; a member of another local cluster cannot join by mistake
as long as the ports differ (they always do: free_port never hands a port out twice)."""


def etcd_binary() -> str:
    path = shutil.which("etcd")
    if path is None:
        raise TemporaryError("etcd is not installed; run `make setup` (apt-get install etcd-server)", delay=0)
    return path


@dataclass(frozen=True)
class Member:
    """One member's name and loopback ports."""

    name: str
    client_port: int
    peer_port: int

    @property
    def client_url(self) -> str:
        return f"http://{LOOPBACK}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{LOOPBACK}:{self.peer_port}"


def plan_members(count: int = 3, *, prefix: str = "etcd") -> tuple[Member, ...]:
    """`count` members on free loopback ports. An odd count tolerates (count - 1) // 2 losses."""
    if not isinstance(count, int) or isinstance(count, bool) or count < 1 or count % 2 == 0:
        raise InputError("members", f"must be an odd number >= 1 (3 tolerates one loss), got {count!r}")
    return tuple(Member(f"{prefix}-{n}", free_port(), free_port()) for n in range(count))


def initial_cluster(members: Sequence[Member]) -> str:
    return ",".join(f"{m.name}={m.peer_url}" for m in members)


def endpoints_of(members: Sequence[Member]) -> str:
    """The control store's view: `127.0.0.1:p1,127.0.0.1:p2,...` (as in etcd://...)."""
    return ",".join(f"{LOOPBACK}:{m.client_port}" for m in members)


def store_url(members: Sequence[Member], *, prefix: str = "") -> str:
    return f"etcd://{endpoints_of(members)}" + (f"?prefix={prefix}" if prefix else "")


def member_argv(member: Member, members: Sequence[Member], *, data_root: Path) -> list[str]:
    """The command line of one member of a new cluster (or of a member restarting on its data dir:
    etcd ignores the --initial-* flags once its data dir holds a member)."""
    return [
        etcd_binary(), "--name", member.name, "--data-dir", str(data_root / member.name),
        "--listen-client-urls", member.client_url, "--advertise-client-urls", member.client_url,
        "--listen-peer-urls", member.peer_url, "--initial-advertise-peer-urls", member.peer_url,
        "--initial-cluster", initial_cluster(members), "--initial-cluster-state", "new",
        "--initial-cluster-token", CLUSTER_TOKEN, "--logger", "zap", "--log-level", "warn",
    ]


def member_status(member: Member, *, timeout_s: float = 1.0) -> dict[str, object] | None:
    """etcd's /v3/maintenance/status of one member (its id, the leader's id, raft term), or None."""
    try:
        reply = httpx.post(f"{member.client_url}/v3/maintenance/status", json={}, timeout=timeout_s)
        reply.raise_for_status()
        body = reply.json()
    except (httpx.HTTPError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def member_healthy(member: Member, *, timeout_s: float = 1.0) -> bool:
    """True when the member answers /health with health "true" (it has a leader, i.e. quorum)."""
    try:
        reply = httpx.get(f"{member.client_url}/health", timeout=timeout_s)
        return reply.status_code == 200 and json.loads(reply.text).get("health") in ("true", True)
    except (httpx.HTTPError, ValueError):
        return False


def leader_of(members: Sequence[Member], *, timeout_s: float = 10.0) -> Member:
    """The one of `members` that leads its cluster (waits up to `timeout_s` for an election)."""
    found: list[Member] = []

    def elected() -> bool:
        for m in members:
            status = member_status(m)
            header = status.get("header") if status else None
            if status and status.get("leader") and isinstance(header, dict) and status["leader"] == header.get("member_id"):
                found.append(m)
                return True
        return False

    wait_until(elected, timeout=timeout_s, interval=0.05, what="an etcd leader")
    return found[0]


@dataclass
class Cluster:
    """A running local cluster started by `start_cluster`."""

    members: tuple[Member, ...]
    data_root: Path
    procs: dict[str, ManagedProcess] = field(default_factory=dict)

    @property
    def endpoints(self) -> str:
        return endpoints_of(self.members)

    def url(self, *, prefix: str = "") -> str:
        return store_url(self.members, prefix=prefix)

    def member(self, name: str) -> Member:
        for m in self.members:
            if m.name == name:
                return m
        raise InputError("member", f"{name!r} is not a member; members: {', '.join(m.name for m in self.members)}")

    def running(self) -> list[Member]:
        return [m for m in self.members if m.name in self.procs and self.procs[m.name].alive()]

    def leader(self, *, timeout_s: float = 10.0) -> Member:
        """The member that leads now (waits up to `timeout_s` for one to be elected)."""
        return leader_of(self.running(), timeout_s=timeout_s)

    def start_member(self, member: Member, *, timeout_s: float = 20.0, wait_healthy: bool = True) -> ManagedProcess:
        proc = spawn(member.name, member_argv(member, self.members, data_root=self.data_root),
                     log_dir=self.data_root / "logs")
        self.procs[member.name] = proc
        wait_until(lambda: port_open(member.client_port) or not proc.alive(), timeout=timeout_s,
                   what=f"etcd member {member.name} on port {member.client_port}")
        if not proc.alive():
            raise TemporaryError(f"etcd member {member.name} exited at start:\n{proc.log_tail()}")
        if wait_healthy:
            wait_until(lambda: member_healthy(member), timeout=timeout_s, interval=0.1,
                       what=f"etcd member {member.name} healthy")
        return proc

    def kill(self, name: str) -> None:
        """SIGKILL one member, as a crash would."""
        proc = self.procs.get(name)
        if proc is not None:
            proc.kill()

    def restart(self, name: str, *, wait_healthy: bool = True) -> None:
        self.start_member(self.member(name), wait_healthy=wait_healthy)

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.kill()


START_ATTEMPTS = 3
"""A free port can be taken by another process between its choice and the member's start (a busy
machine runs many tests); a new cluster then starts again on other ports."""


def start_cluster(data_root: Path, *, count: int = 3, timeout_s: float = 30.0) -> Cluster:
    """Start `count` members on free loopback ports and wait until the cluster has a leader."""
    for attempt in range(1, START_ATTEMPTS + 1):
        root = data_root if attempt == 1 else data_root / f"retry-{attempt}"
        root.mkdir(parents=True, exist_ok=True)
        cluster = Cluster(members=plan_members(count, prefix="etcd"), data_root=root)
        started = time.monotonic()
        try:
            for member in cluster.members:  # a member waits for its peers before it is healthy
                cluster.start_member(member, wait_healthy=False)
            for member in cluster.members:
                remaining = max(1.0, timeout_s - (time.monotonic() - started))
                wait_until(lambda m=member: member_healthy(m) or not cluster.procs[m.name].alive(),  # type: ignore[misc]
                           timeout=remaining, interval=0.1, what=f"etcd member {member.name} healthy")
                if not cluster.procs[member.name].alive():
                    raise TemporaryError(f"etcd member {member.name} exited at start:\n{cluster.procs[member.name].log_tail()}")
        except TemporaryError as exc:
            cluster.stop()
            if attempt == START_ATTEMPTS or "exited at start" not in str(exc):
                raise
            continue
        except BaseException:
            cluster.stop()
            raise
        return cluster
    raise AssertionError("unreachable")
