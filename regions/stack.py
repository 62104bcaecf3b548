"""The local multi-region stack: which processes run, started and stopped by PID.

`up(specs, ...)` starts the processes it is handed, in order (regionctl.stack_specs says which:
with `--control-store etcd` first a 3-member etcd cluster (regions/stack_etcd.py), which then holds
the control state; per region a redis-server, the cell, the replicator and the feature updater;
the retention worker; then the controllers and the edge; with `regionctl up --observability`, a
Prometheus, kind "prometheus"); this ground floor names no program of its own. Every process is recorded in
<state_dir>/stack.json with its PID and command line; `down` stops exactly those PIDs (checking that
the PID still runs the recorded command, so a recycled PID is never signalled) and nothing else.
"""
from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from regions.errors import InputError, TemporaryError
from regions.tokens import TOKENS_FILE, ensure_tokens_file, read_roles
from regions.processes import LOOPBACK, port_open, wait_until
from regions.topology import REPO_ROOT, Topology

STACK_FILE = "stack.json"


def ensure_tokens(state_dir: Path) -> dict[str, str]:
    """The stack's tokens ({token: role}), generated once, one per role (regions.tokens)."""
    path = state_dir / TOKENS_FILE
    ensure_tokens_file(path)
    return read_roles(path)


def token_for(state_dir: Path, role: str) -> str:
    for token, r in ensure_tokens(state_dir).items():
        if r == role:
            return token
    raise InputError("role", f"no token with role {role!r} in {state_dir / TOKENS_FILE}")


def default_state_dir() -> Path:
    """REGIONCTL_STATE_DIR, else var/stack under the repository."""
    return Path(os.environ.get("REGIONCTL_STATE_DIR", REPO_ROOT / "var" / "stack"))


@dataclass(frozen=True)
class ProcessSpec:
    """One process of the stack: how to start it and how to know it is up."""

    name: str
    kind: str
    """etcd | redis | cell | replicator | feature-updater | retention | controller | edge | prometheus"""
    argv: tuple[str, ...]
    region: str = ""
    port: int = 0
    """A TCP port that accepts connections once the process is ready (0: none)."""
    host: str = ""
    """Where `port` is reached ("" = loopback); a region's namespace address in netns mode."""
    netns: str = ""
    """The network namespace the process runs in ("" = the host's); argv then starts with `ip netns exec`."""


@dataclass
class RunningProcess:
    name: str
    kind: str
    pid: int
    argv: list[str]
    region: str = ""
    port: int = 0
    started_at: float = 0.0
    log: str = ""
    proc_start: int = 0
    """Kernel start time of the PID (clock ticks since boot): tells our process from a recycled PID."""
    host: str = ""
    netns: str = ""


@dataclass
class StackState:
    processes: dict[str, RunningProcess] = field(default_factory=dict)
    topology_path: str = ""
    """The topology file the stack was started with; restarts and chaos actions use it too."""

    @classmethod
    def load(cls, state_dir: Path) -> "StackState":
        path = state_dir / STACK_FILE
        if not path.exists():
            return cls()
        raw = json.loads(path.read_text())
        return cls(processes={p["name"]: RunningProcess(**p) for p in raw.get("processes", [])},
                   topology_path=raw.get("topology_path", ""))

    def save(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        tmp = state_dir / (STACK_FILE + ".tmp")
        tmp.write_text(json.dumps({"topology_path": self.topology_path,
                                   "processes": [asdict(p) for p in self.processes.values()]}, indent=2))
        tmp.replace(state_dir / STACK_FILE)


def _proc_start(pid: int) -> int | None:
    """Start time of `pid` in clock ticks since boot (field 22 of /proc/PID/stat); None when gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    if fields[0] == "Z":
        return None
    return int(fields[19])


def is_running(proc: RunningProcess) -> bool:
    """True only when the PID is alive AND is the process we started (same kernel start time), so
    a recycled PID is never taken for ours. (Command lines cannot be compared: redis-server
    rewrites its own.)"""
    started = _proc_start(proc.pid)
    return started is not None and (proc.proc_start == 0 or started == proc.proc_start)


def start_process(spec: ProcessSpec, *, state_dir: Path, env: dict[str, str] | None = None) -> RunningProcess:
    import subprocess

    log_dir = state_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    if spec.kind == "redis":
        Path(spec.argv[spec.argv.index("--dir") + 1]).mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{spec.name}.log"
    with open(log_path, "ab") as log:
        popen = subprocess.Popen(
            list(spec.argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})}, cwd=str(REPO_ROOT), start_new_session=True,
        )
    return RunningProcess(
        name=spec.name, kind=spec.kind, pid=popen.pid, argv=list(spec.argv), region=spec.region,
        port=spec.port, started_at=time.time(), log=str(log_path), proc_start=_proc_start(popen.pid) or 0,
        host=spec.host, netns=spec.netns,
    )


def wait_ready(proc: RunningProcess, *, timeout: float) -> None:
    if not proc.port:
        return
    host = proc.host or LOOPBACK
    try:
        wait_until(lambda: port_open(proc.port, host) or not is_running(proc), timeout=timeout,
                   what=f"{proc.name} on {host}:{proc.port}")
    except TemporaryError as exc:
        raise TemporaryError(f"{proc.name} did not open port {proc.port} within {timeout:.0f}s; see {proc.log}") from exc
    if not is_running(proc):
        raise TemporaryError(f"{proc.name} exited during start; see {proc.log}")


def signal_process(proc: RunningProcess, sig: int) -> bool:
    """Send `sig` to the process if it is still the one we started. True when sent."""
    if not is_running(proc):
        return False
    try:
        os.kill(proc.pid, sig)
    except ProcessLookupError:
        return False
    return True


def stop_processes(procs: Iterable[RunningProcess], *, timeout: float = 10.0, sig: int = signal.SIGTERM) -> list[str]:
    """Stop the given processes (TERM, then KILL after `timeout`). Returns the names stopped."""
    sent = [p for p in procs if signal_process(p, sig)]
    for proc in _wait_gone(sent, timeout=timeout):
        signal_process(proc, signal.SIGKILL)
    for proc in sent:
        _reap(proc.pid)
    return [p.name for p in sent]


def _wait_gone(procs: list[RunningProcess], *, timeout: float) -> list[RunningProcess]:
    """Reap and poll until none of `procs` runs (a signal is delivered asynchronously) or `timeout`
    passes; returns those still running."""
    deadline = time.monotonic() + timeout
    while True:
        for proc in procs:
            _reap(proc.pid)
        alive = [p for p in procs if is_running(p)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.02)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def select(state: StackState, *, names: Iterable[str] = (), region: str = "", kinds: Iterable[str] = ()) -> list[RunningProcess]:
    names, kinds = set(names), set(kinds)
    chosen = [
        p for p in state.processes.values()
        if (not names or p.name in names) and (not region or p.region == region) and (not kinds or p.kind in kinds)
    ]
    if names and len(chosen) != len(names):
        missing = sorted(names - {p.name for p in chosen})
        raise InputError("process", f"not part of the stack: {', '.join(missing)}; see `regionctl ps`")
    return chosen


ProgressFn = Callable[[str], None]


@dataclass(frozen=True)
class StackUrls:
    artifacts: str
    control_store: str


def stack_urls(state_dir: Path) -> StackUrls:
    """Where the local stack keeps its bundles and its control store. The default stack (var/stack)
    shares var/artifacts with `regionctl train`/`artifacts`; any other state dir keeps its own, also
    when REGIONCTL_STATE_DIR names it (a bare `chaos run` finds the stack by that variable)."""
    root = state_dir.resolve()
    artifacts = REPO_ROOT / "var" / "artifacts" if root == (REPO_ROOT / "var" / "stack").resolve() else root / "artifacts"
    from regions.stack_etcd import control_store_url, load_members

    members = load_members(root)
    control = control_store_url(members) if members else f"sqlite:///{root / 'control.db'}"
    return StackUrls(artifacts=f"file://{artifacts}", control_store=control)


def up(
    specs: Sequence[ProcessSpec], *, topology_path: Path, state_dir: Path, progress: ProgressFn = lambda _m: None,
    ready_timeout_s: float = 60.0, kinds: Iterable[str] | None = None,
) -> StackState:
    """Start every process of `specs` (in order; the caller says what runs, e.g.
    regionctl.stack_specs) that is not already running; wait until each is ready."""
    state = StackState.load(state_dir)
    state.topology_path = str(topology_path.resolve())
    ensure_tokens(state_dir)
    wanted = set(kinds) if kinds is not None else None
    env = _env(state.topology_path, state_dir)
    started: list[RunningProcess] = []
    etcd_healthy = False
    try:
        for spec in specs:
            if wanted is not None and spec.kind not in wanted:
                continue
            existing = state.processes.get(spec.name)
            if existing is not None and is_running(existing):
                continue
            if spec.port and port_open(spec.port, spec.host or LOOPBACK):
                raise InputError("port", f"{spec.name} needs port {spec.port}, which something else already uses; "
                                 "stop it or change topology.toml")
            if spec.kind != "etcd" and not etcd_healthy and any(p.kind == "etcd" for p in started):
                etcd_healthy = _wait_etcd_healthy(state_dir, timeout=ready_timeout_s)
            if spec.kind in ("controller", "edge"):
                for earlier in started:  # controllers judge cells: start them once every cell answers
                    wait_ready(earlier, timeout=ready_timeout_s)
            proc = start_process(spec, state_dir=state_dir, env=env)
            state.processes[spec.name] = proc
            state.save(state_dir)
            started.append(proc)
            progress(f"started {spec.name} (pid {proc.pid})")
            if spec.kind in ("etcd", "redis", "controller", "edge"):
                wait_ready(proc, timeout=ready_timeout_s)
        for proc in started:
            wait_ready(proc, timeout=ready_timeout_s)
        if not etcd_healthy and any(p.kind == "etcd" for p in started):
            _wait_etcd_healthy(state_dir, timeout=ready_timeout_s)
    except Exception:
        state.save(state_dir)
        raise
    return state


def _wait_etcd_healthy(state_dir: Path, *, timeout: float) -> bool:
    """Once the etcd members run, wait until each answers healthy (the cluster has a leader)."""
    from regions.etcd_cluster import member_healthy
    from regions.stack_etcd import load_members

    for member in load_members(state_dir) or ():
        wait_until(lambda m=member: member_healthy(m), timeout=timeout, interval=0.1,  # type: ignore[misc]
                   what=f"etcd member {member.name} healthy")
    return True


def _env(topology_path: str, state_dir: Path) -> dict[str, str]:
    """What every process of the stack is told: its topology, state dir, stores and tokens."""
    from regions.topology import default_topology_path

    urls = stack_urls(state_dir)
    return {"REGIONCTL_TOPOLOGY": topology_path or str(default_topology_path().resolve()),
            "REGIONCTL_STATE_DIR": str(state_dir), "REGIONCTL_ARTIFACTS": urls.artifacts,
            "REGIONCTL_CONTROL_STORE": urls.control_store, "REGIONCTL_TOKENS_FILE": str(state_dir / TOKENS_FILE)}


def down(*, state_dir: Path, progress: ProgressFn = lambda _m: None) -> list[str]:
    """Stop exactly the processes `up` recorded, edge first and Redis last; then remove the network
    namespaces and links a netns stack recorded (<state_dir>/netns.json, regions.netns_apply), also
    those of an `up` that crashed half way. What cannot be removed raises, naming it."""
    state = StackState.load(state_dir)
    order = ["prometheus", "edge", "controller", "cell", "replicator", "feature-updater", "retention", "redis", "etcd"]
    stopped: list[str] = []
    for kind in order:
        names = stop_processes([p for p in state.processes.values() if p.kind == kind])
        for name in names:
            progress(f"stopped {name}")
        stopped.extend(names)
    state.processes.clear()
    state.save(state_dir)
    from regions import netns_apply

    if netns_apply.recorded(state_dir) is not None:
        netns_apply.require_root("removing the netns stack's namespaces needs root; run `regionctl down` as root")
        left = netns_apply.remove(state_dir, progress=progress)
        if left:
            raise TemporaryError(f"could not remove {', '.join(left)}; remove them by hand (`ip netns del NAME`)", delay=0)
    return stopped


def ps(*, state_dir: Path) -> list[tuple[RunningProcess, bool]]:
    state = StackState.load(state_dir)
    return [(p, is_running(p)) for p in state.processes.values()]


def kill(state_dir: Path, *, names: Iterable[str] = (), region: str = "", kinds: Iterable[str] = (),
         timeout: float = 10.0) -> list[str]:
    """SIGKILL the chosen processes of the stack (what a crash looks like) and return once they are
    gone: a signal is delivered asynchronously, and a `restart` right after must not find a dying
    process still "running" and skip it. Raises TemporaryError naming any still alive after `timeout`."""
    state = StackState.load(state_dir)
    chosen = select(state, names=names, region=region, kinds=kinds)
    sent = [p for p in chosen if signal_process(p, signal.SIGKILL)]
    alive = _wait_gone(sent, timeout=timeout)
    if alive:
        raise TemporaryError(f"{', '.join(p.name for p in alive)} still running {timeout:.0f}s after SIGKILL "
                             "(stuck in the kernel?)")
    return [p.name for p in sent]


def restart(topology: Topology, state_dir: Path, *, names: Iterable[str] = (), region: str = "", kinds: Iterable[str] = (),
            ready_timeout_s: float = 60.0) -> list[str]:
    """Start again the chosen processes that are not running, with their recorded command lines."""
    state = StackState.load(state_dir)
    chosen = select(state, names=names, region=region, kinds=kinds)
    env = _env(state.topology_path, state_dir)
    order = {"etcd": -1, "redis": 0, "cell": 1, "replicator": 2, "feature-updater": 3, "retention": 4, "controller": 5,
             "edge": 6, "prometheus": 7}
    restarted = []
    for old in sorted(chosen, key=lambda p: order.get(p.kind, 9)):
        if is_running(old):
            continue
        spec = ProcessSpec(name=old.name, kind=old.kind, argv=tuple(old.argv), region=old.region, port=old.port,
                           host=old.host, netns=old.netns)
        proc = start_process(spec, state_dir=state_dir, env=env)
        state.processes[old.name] = proc
        state.save(state_dir)
        wait_ready(proc, timeout=ready_timeout_s)
        restarted.append(old.name)
    return restarted
