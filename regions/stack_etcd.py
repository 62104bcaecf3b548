"""The local stack's etcd cluster (`regionctl up --control-store etcd`): its members, kept in
<state_dir>/etcd.json so that every later command (ps, down, restart, chaos actions, the CLI)
finds the same members and the same control store URL.

The members' ports are chosen once, when the stack first runs on etcd, and kept with its data in
<state_dir>/etcd/<member>: a restarted member rejoins with its own data. Ports that never served
(no member has data yet, e.g. `up` failed because another process took a port between the choice
and the start) are chosen again by the next `up`. `regionctl up
--control-store sqlite` on the same state dir goes back to the SQLite file (etcd.json is removed;
the etcd data stays on disk until the state dir is deleted).
"""
from __future__ import annotations

import json
from pathlib import Path

from regions.errors import InputError
from regions.etcd_cluster import Member, member_argv, plan_members, store_url

ETCD_FILE = "etcd.json"
STORE_KINDS = ("sqlite", "etcd")


def load_members(state_dir: Path) -> tuple[Member, ...] | None:
    """The members of the stack's cluster, or None when the stack uses SQLite."""
    path = state_dir / ETCD_FILE
    if not path.exists():
        return None
    try:
        raw = json.loads(path.read_text())
        return tuple(Member(str(m["name"]), int(m["client_port"]), int(m["peer_port"])) for m in raw["members"])
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(ETCD_FILE, f"{path} is unreadable ({exc}); delete it and the etcd/ folder next to it, "
                                    "then run `regionctl up --control-store etcd` again") from exc


def choose_store(state_dir: Path, kind: str | None) -> tuple[Member, ...] | None:
    """Apply `--control-store`: 'etcd' plans the members once (free loopback ports), 'sqlite' forgets
    them, None keeps what the state dir already uses. Returns the members (None: SQLite)."""
    if kind is not None and kind not in STORE_KINDS:
        raise InputError("--control-store", f"{kind!r} is not a stack store; allowed: {', '.join(STORE_KINDS)}")
    members = load_members(state_dir)
    if members is not None and not any((state_dir / "etcd" / m.name / "member").exists() for m in members):
        members = None  # planned but never started (e.g. a port was taken meanwhile): choose ports again
        if kind is None:
            kind = "etcd"
    if kind == "sqlite":
        (state_dir / ETCD_FILE).unlink(missing_ok=True)
        return None
    if kind == "etcd" and members is None:
        members = plan_members(3)
        state_dir.mkdir(parents=True, exist_ok=True)
        (state_dir / ETCD_FILE).write_text(json.dumps(
            {"members": [{"name": m.name, "client_port": m.client_port, "peer_port": m.peer_port} for m in members]},
            indent=2))
    return members


def control_store_url(members: tuple[Member, ...]) -> str:
    return store_url(members)


def member_commands(members: tuple[Member, ...], state_dir: Path) -> list[tuple[Member, list[str]]]:
    """Each member with its command line (data in <state_dir>/etcd/<name>)."""
    return [(m, member_argv(m, members, data_root=state_dir / "etcd")) for m in members]
