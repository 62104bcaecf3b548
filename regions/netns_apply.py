"""Applying the networked stack's plan (regions.netns) with `ip`, and removing it.

    create(plan, state_dir)   refuses without root, or when the subnet is already routed on the host;
                              records the plan in <state_dir>/netns.json BEFORE the first command (a
                              crashed `up` can be cleaned by `down`), runs the setup commands; on a
                              failure removes what it made and raises
    remove(state_dir)         runs the recorded plan's teardown (each step tolerates "already gone"),
                              then forgets it; what it could not remove is returned, never hidden
    recorded(state_dir)       the recorded plan, or None
    list_namespaces()         `ip netns list`, names
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Callable, Sequence

from regions.errors import InputError, TemporaryError
from regions.netns import NetnsPlan, missing_namespaces, parse_netns_list, routed_conflicts

NETNS_FILE = "netns.json"
ROOT_NEEDED = ("the netns stack needs root: it creates network namespaces, veth links and a bridge "
               "(run `regionctl up --netns` as root, or use the default loopback mode)")
Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def _run(argv: Sequence[str]) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=False)


def require_root(what: str = ROOT_NEEDED) -> None:
    if os.geteuid() != 0:
        raise InputError("--netns", what)
    if shutil.which("ip") is None:
        raise InputError("--netns", "`ip` (iproute2) is not installed; run `make setup` (apt-get install iproute2)")


def _json(argv: Sequence[str], run: Runner) -> list[dict]:  # type: ignore[type-arg]
    done = run(argv)
    if done.returncode != 0:
        raise TemporaryError(f"{' '.join(argv)} failed: {done.stderr.strip()}", delay=0)
    return json.loads(done.stdout or "[]")


def list_namespaces(run: Runner = _run) -> list[str]:
    done = run(["ip", "netns", "list"])
    return parse_netns_list(done.stdout) if done.returncode == 0 else []


def recorded(state_dir: Path) -> NetnsPlan | None:
    path = state_dir / NETNS_FILE
    if not path.exists():
        return None
    try:
        return NetnsPlan.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(str(path), f"is not a netns record ({exc}); remove the namespaces it named by hand "
                                    "(`ip netns list`), then the file") from exc


def create(plan: NetnsPlan, state_dir: Path, *, run: Runner = _run, progress: Callable[[str], None] = lambda _m: None) -> bool:
    """Make the plan's namespaces and links; False when the recorded plan is already in place."""
    require_root()
    previous = recorded(state_dir)
    if previous is not None:
        if previous == plan and not missing_namespaces(plan, list_namespaces(run)):
            return False
        raise InputError("--netns", f"{state_dir / NETNS_FILE} records a netns stack ({previous.subnet}) that is not "
                                    "the one asked for or is half gone; run `regionctl down` first")
    conflicts = routed_conflicts(plan.subnet, _json(["ip", "-j", "-4", "route", "show", "table", "all"], run),
                                 _json(["ip", "-j", "-4", "addr"], run))
    if conflicts:
        raise InputError("network.subnet", f"{plan.subnet} is already routed on this host ({'; '.join(conflicts)}); "
                                           "choose another private /24 in topology.toml [network] subnet")
    clash = [ns for ns in plan.namespaces() if ns in list_namespaces(run)]
    if clash:
        raise InputError("--netns", f"namespaces {', '.join(clash)} already exist and are not this stack's; remove them "
                                    "(`ip netns del NAME`) or choose another subnet")
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / NETNS_FILE).write_text(json.dumps(plan.to_json(), indent=2))
    for argv in plan.setup_commands():
        done = run(argv)
        if done.returncode != 0:
            left = remove(state_dir, run=run)
            raise TemporaryError(f"`{' '.join(argv)}` failed: {done.stderr.strip()}"
                                 + (f"; could not remove {', '.join(left)}" if left else "; removed what was made"), delay=0)
    progress(f"network namespaces {', '.join(plan.namespaces())} on {plan.subnet} (host {plan.host_address})")
    return True


def _gone(stderr: str) -> bool:
    text = stderr.lower()
    return any(s in text for s in ("cannot find device", "no such file", "does not exist", "cannot open network namespace"))


def remove(state_dir: Path, *, run: Runner = _run, progress: Callable[[str], None] = lambda _m: None) -> list[str]:
    """Remove what the recorded plan made; returns what could not be removed ([] when all is gone)."""
    plan = recorded(state_dir)
    if plan is None:
        return []
    left = []
    for argv in plan.teardown_commands():
        done = run(argv)
        if done.returncode != 0 and not _gone(done.stderr):
            left.append(f"{argv[-1]} ({done.stderr.strip()})")
    still = [ns for ns in plan.namespaces() if ns in list_namespaces(run)]
    left += [ns for ns in still if not any(item.startswith(ns + " ") for item in left)]
    if not left:
        (state_dir / NETNS_FILE).unlink(missing_ok=True)
        progress(f"removed network namespaces {', '.join(plan.namespaces())} and link {plan.host_link}")
    return left


__all__ = ["NETNS_FILE", "ROOT_NEEDED", "create", "list_namespaces", "recorded", "remove", "require_root"]
