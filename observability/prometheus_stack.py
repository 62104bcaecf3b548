"""A real Prometheus (Debian's `prometheus` package) for the local stack: `regionctl up --observability`.

    write_config(topology, state_dir)       write <state_dir>/prometheus/prometheus.yml from the
                                            recorded processes (observability.prometheus_config)
                                            with the shipped rules (promtool-checked first)
    prometheus_argv(config=, ...)           the command line of Debian's prometheus for it
                                            (regionctl.stack_specs.prometheus_spec builds the spec)
    start_prometheus(spec, state_dir, ...)  start it through regions.stack.up (recorded in stack.json,
                                            kind "prometheus"; kept when already running), wait until
                                            /-/ready answers
    prometheus_url(state_dir)               where the recorded Prometheus listens (None: not started)

`regionctl down` stops it with the rest (by PID, like every process of the stack).
"""
from __future__ import annotations

import json
from pathlib import Path

import httpx

from regions import stack
from regions.errors import PermanentError, TemporaryError
from regions.processes import wait_until
from regions.topology import Topology
from observability.prometheus_config import scrape_config, shipped_rule_files
from observability.promtool import check_rules, installed

NAME = "prometheus"
RETENTION = "1d"
"""The local stack keeps a day of samples: enough for a game day's report, small on disk."""


def write_config(topology: Topology, state_dir: Path) -> Path:
    """<state_dir>/prometheus/prometheus.yml for the processes recorded now (rules checked first)."""
    rules = shipped_rule_files()
    checked = check_rules(*rules)
    if not checked.ok:
        raise PermanentError(f"the shipped rules do not pass promtool check rules: {checked.output}")
    doc = scrape_config(stack.StackState.load(state_dir), topology, rule_files=rules)
    out = state_dir / NAME / "prometheus.yml"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2))  # JSON is YAML
    return out


def prometheus_url(state_dir: Path) -> str | None:
    proc = stack.StackState.load(state_dir).processes.get(NAME)
    return f"http://127.0.0.1:{proc.port}" if proc is not None and stack.is_running(proc) else None


def prometheus_argv(*, config: Path, data_dir: Path, host: str, port: int) -> tuple[str, ...]:
    return (installed("prometheus"), f"--config.file={config}", f"--storage.tsdb.path={data_dir}",
            f"--storage.tsdb.retention.time={RETENTION}", f"--web.listen-address={host}:{port}",
            "--web.enable-lifecycle")


def start_prometheus(spec: stack.ProcessSpec, state_dir: Path, *, topology_path: Path,
                     ready_timeout_s: float = 60.0) -> stack.RunningProcess:
    """Start (or keep) the stack's Prometheus; see the module docstring."""
    state = stack.StackState.load(state_dir)
    existing = state.processes.get(spec.name)
    if existing is not None and stack.is_running(existing):
        return existing
    proc = stack.up([spec], topology_path=topology_path, state_dir=state_dir,
                    ready_timeout_s=ready_timeout_s).processes[spec.name]
    url = f"http://127.0.0.1:{proc.port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{url}/-/ready", timeout=1.0, trust_env=False).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(ready, timeout=ready_timeout_s, what="prometheus ready")
    except TemporaryError as exc:
        raise TemporaryError(f"prometheus did not become ready; see {proc.log}") from exc
    return proc


__all__ = ["NAME", "prometheus_argv", "prometheus_url", "start_prometheus", "write_config"]
