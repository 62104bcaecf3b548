"""The cell-fault ledger and the chaos token: what the cell-fault actions (chaos.actions) set, kept
in the stack's state directory so that probes, expectations and `regionctl gameday abort` can read
what chaos left in place, and the token those actions send to the cells' /admin/faults."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from chaoslib.exceptions import ActivityFailed

FAULT_LEDGER = "chaos-faults.json"
"""<state_dir>/chaos-faults.json: {region: the cell's fault state as chaos last set it}. The
expectation probes (chaos.expectations) read which cell faults are in place from here, not from
the cell under test."""

__all__ = ["FAULT_LEDGER", "chaos_token", "fault_ledger", "record_faults"]


def chaos_token(state_dir: Path) -> str:
    """The token with role "chaos" from <state_dir>/tokens.json ({token: role})."""
    path = state_dir / "tokens.json"
    try:
        tokens = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ActivityFailed(f"{path} does not exist; `regionctl up` writes it") from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise ActivityFailed(f"cannot read {path} ({exc}); restart the stack to rewrite it") from exc
    for token, role in (tokens.items() if isinstance(tokens, dict) else ()):
        if role == "chaos":
            return str(token)
    raise ActivityFailed(f"{path} holds no token with role 'chaos'; restart the stack to rewrite it")


def fault_ledger(state_dir: Path) -> dict[str, dict[str, Any]]:
    """The cell faults chaos has set and not cleared, per region ({} when none or unreadable)."""
    try:
        ledger = json.loads((state_dir / FAULT_LEDGER).read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return {str(k): v for k, v in ledger.items() if isinstance(v, dict)} if isinstance(ledger, dict) else {}


def record_faults(state_dir: Path, region: str, faults: dict[str, Any]) -> None:
    """Write the region's faults to the ledger (a region with every fault off is removed), atomically."""
    ledger = fault_ledger(state_dir)
    if any(any(v) if isinstance(v, list) else v for v in faults.values()):  # [0, 0]: answer latency off
        ledger[region] = faults
    else:
        ledger.pop(region, None)
    tmp = state_dir / f"{FAULT_LEDGER}.tmp"
    tmp.write_text(json.dumps(ledger, sort_keys=True))
    tmp.replace(state_dir / FAULT_LEDGER)
