"""The faults chaos has injected and not removed, in the stack's state directory.

<state_dir>/chaos-fault-registry.json maps a fault key ("region:us-east", "cell:us-west",
"controllers", ...) to the action that removes it ({"func", "arguments", "what", "at", "pid"}; a function of chaos.actions
or, for the network faults of a netns stack, chaos.net_actions).
Every injecting action in chaos.actions records its fault BEFORE injecting it (a run killed
between the two leaves an entry whose undo is harmless: every undo action is idempotent), and
every undo action removes the entry once it succeeded. So whatever started the fault, a game day,
a bare `chaos run` or a person calling an action, `regionctl gameday abort` (`clear_all`) finds
it here and removes it. Writes take an exclusive lock on the file's sibling `.lock` and replace
the file atomically; concurrent actions never lose each other's entries.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

REGISTRY_FILE = "chaos-fault-registry.json"


def _path(state_dir: Path) -> Path:
    return Path(state_dir) / REGISTRY_FILE


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[dict[str, Any]]:
    path = _path(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        entries = pending(state_dir)
        before = json.dumps(entries, sort_keys=True)
        yield entries
        if json.dumps(entries, sort_keys=True) != before:
            with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as fh:
                json.dump(entries, fh, indent=2, sort_keys=True)
            os.replace(fh.name, path)


def pending(state_dir: Path) -> dict[str, Any]:
    """The registered faults ({} when none; an unreadable file is reported, never guessed)."""
    path = _path(state_dir)
    try:
        entries = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as exc:
        raise RuntimeError(f"{path} is unreadable ({exc}); fix or remove it after checking the stack by hand") from exc
    return {str(k): v for k, v in entries.items() if isinstance(v, dict)} if isinstance(entries, dict) else {}


def record(state_dir: Path, key: str, *, undo: str, arguments: Mapping[str, Any], what: str) -> None:
    """Register fault `key`, removed by chaos.actions.<undo>(**arguments)."""
    with _locked(state_dir) as entries:
        entries[key] = {"func": undo, "arguments": dict(arguments), "what": what, "at": time.time(), "pid": os.getpid()}


def forget(state_dir: Path, key: str) -> None:
    """The fault `key` is removed (its undo succeeded)."""
    with _locked(state_dir) as entries:
        entries.pop(key, None)


def clear_all(state_dir: Path, *, configuration: Mapping[str, Any], progress: Callable[[str], None]) -> list[dict[str, Any]]:
    """Run the undo action of every registered fault; an undo that fails stays registered."""
    from chaos import actions, net_actions

    done = []
    for key, entry in sorted(pending(state_dir).items()):
        module = next((m for m in (actions, net_actions) if entry.get("func") in m.__all__), None)
        func = getattr(module, str(entry.get("func")), None) if module is not None else None
        if func is None:
            progress(f"fault {key}: unknown undo action {entry.get('func')!r}; left registered")
            done.append({"key": key, "status": "failed", "error": "unknown undo action"})
            continue
        try:
            func(**dict(entry.get("arguments") or {}), configuration=dict(configuration))
        except Exception as exc:  # noqa: BLE001 - reported, the others are still tried
            progress(f"fault {key}: {entry['func']} failed: {exc}")
            done.append({"key": key, "status": "failed", "error": str(exc)})
            continue
        forget(state_dir, key)
        progress(f"fault {key} ({entry.get('what')}): removed by {entry['func']}")
        done.append({"key": key, "status": "succeeded", "func": entry["func"]})
    return done


__all__ = ["REGISTRY_FILE", "clear_all", "forget", "pending", "record"]
