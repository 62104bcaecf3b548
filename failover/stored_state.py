"""What the controller reads from the control store each round (and before an operator change).

    read_stored(store) -> Stored   the routing table, overrides, and failback progress,
                                   each with its store version; a malformed
                                   document is reported in `problems` and read as empty
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from contracts.store_keys import FAILBACK_KEY, OVERRIDES_KEY, TABLE_KEY
from failover.control_store import ControlStore
from failover.overrides import Overrides
from failover.steering import FailbackProgress
from regions.errors import InputError


@dataclass(frozen=True, kw_only=True)
class Stored:
    table: Mapping[str, Any] | None = None
    table_version: int = 0
    overrides: Overrides = field(default_factory=Overrides)
    overrides_version: int = 0
    failback: Mapping[str, FailbackProgress] = field(default_factory=dict)
    failback_raw: Mapping[str, Any] = field(default_factory=dict)
    problems: tuple[str, ...] = ()


def read_stored(store: ControlStore) -> Stored:
    """The controller's shared state; a malformed document is reported and read as empty."""
    problems: list[str] = []

    def load(key: str) -> tuple[Any, int]:
        found = store.get(key)
        if found is None:
            return None, 0
        try:
            return json.loads(found.value), found.version
        except ValueError as exc:
            problems.append(f"{key} is not JSON ({exc})")
            return None, found.version

    table, table_v = load(TABLE_KEY)
    raw_over, over_v = load(OVERRIDES_KEY)
    raw_fb, fb_v = load(FAILBACK_KEY)
    try:
        overrides = Overrides.from_dict(raw_over or {})
    except InputError as exc:
        problems.append(str(exc))
        overrides = Overrides()
    failback: dict[str, FailbackProgress] = {}
    for region, body in (raw_fb or {}).items() if isinstance(raw_fb, Mapping) else ():
        try:
            failback[region] = FailbackProgress.from_dict(body)
        except (KeyError, TypeError, ValueError) as exc:
            problems.append(f"{FAILBACK_KEY} entry {region} is malformed ({exc!r})")
    return Stored(table=table if isinstance(table, Mapping) else None, table_version=table_v,
                  overrides=overrides, overrides_version=over_v, failback=failback,
                  failback_raw=raw_fb if isinstance(raw_fb, Mapping) else {}, problems=tuple(problems))


__all__ = ["Stored", "read_stored"]
