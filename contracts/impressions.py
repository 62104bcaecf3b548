"""Impressions: what a cell showed a user, the one definition of the record and its stream encoding.

An impression is one homepage answer that was shown to a known user: the items in the order they
were shown, the bundle that ranked them, and the experiment and arm that answer belongs to (empty
when the user is in no experiment). Outcomes (the interaction log's view, cart and purchase events)
are attributed to impressions by online_metrics.attribution.

It carries a user id, so it is personal data: a cell records it only in a region of the user's home
geography (replication.impression_log), and it is deleted with the user.
"""
from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass
from typing import Any, Mapping

from contracts.limits import MAX_COUNT, MAX_ID_LEN
from regions.errors import InputError

__all__ = ["Impression", "OUTCOME_OF_EVENT", "OUTCOMES", "PROBE_SUFFIX", "is_probe_user", "probe_user_id"]

PROBE_SUFFIX = "-probe"
"""The controller's probe asks each cell for the homepage of `<geography>-probe` every second
(failover.probing). Nobody sees that slate or reacts to it, so it is never an impression: recorded,
it would add clickless impressions to whichever arm or bundle the probe user is bucketed in."""


def probe_user_id(geography: str) -> str:
    return f"{geography}{PROBE_SUFFIX}"


def is_probe_user(user_id: str) -> bool:
    return user_id.endswith(PROBE_SUFFIX)

OUTCOME_OF_EVENT: Mapping[str, str] = {"view": "click", "cart": "add_to_cart", "purchase": "purchase"}
"""Which interaction-log event type (contracts.events) is which outcome of an impression: a view of
a shown item is its click."""
OUTCOMES = tuple(OUTCOME_OF_EVENT.values())


@dataclass(frozen=True)
class Impression:
    impression_id: str
    user_id: str
    items: tuple[str, ...]
    """Item ids in the order shown."""
    ts: float
    """When the cell answered, epoch seconds (the cell's clock)."""
    region: str
    bundle_version: str
    tier: str
    experiment: str = ""
    """The experiment this answer belongs to; "" when the user is in none."""
    arm: str = ""
    """The arm of `experiment` the user is bucketed in; "" when none."""
    surface: str = "homepage"

    def __post_init__(self) -> None:
        for name in ("impression_id", "user_id", "region", "bundle_version"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise InputError(name, "is required (a non-empty string)")
        for name in ("impression_id", "user_id", "experiment", "arm", "bundle_version", "surface"):
            if len(getattr(self, name)) > MAX_ID_LEN:
                raise InputError(name, f"must be at most {MAX_ID_LEN} characters")
        if bool(self.experiment) != bool(self.arm):
            raise InputError("arm", "experiment and arm are given together or not at all")
        if not isinstance(self.ts, (int, float)) or not math.isfinite(self.ts) or self.ts <= 0:
            raise InputError("ts", f"must be positive epoch seconds, got {self.ts!r}")
        if not self.items or len(self.items) > MAX_COUNT or not all(isinstance(i, str) and i for i in self.items):
            raise InputError("items", f"must be 1..{MAX_COUNT} non-empty item ids")

    @classmethod
    def new(cls, *, user_id: str, items: tuple[str, ...], ts: float, region: str, bundle_version: str, tier: str,
            experiment: str = "", arm: str = "", surface: str = "homepage") -> "Impression":
        return cls(impression_id=uuid.uuid4().hex, user_id=user_id, items=tuple(items), ts=float(ts), region=region,
                   bundle_version=bundle_version, tier=tier, experiment=experiment, arm=arm, surface=surface)

    def to_fields(self) -> dict[str, str]:
        """Flat string fields for XADD."""
        return {"impression_id": self.impression_id, "user_id": self.user_id, "items": json.dumps(list(self.items)),
                "ts": repr(float(self.ts)), "region": self.region, "bundle_version": self.bundle_version,
                "tier": self.tier, "experiment": self.experiment, "arm": self.arm, "surface": self.surface}

    @classmethod
    def from_fields(cls, fields: Mapping[Any, Any]) -> "Impression":
        """Decode a stream entry (bytes or str values); InputError on a malformed one."""
        d = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v) for k, v in fields.items()}
        try:
            items = json.loads(d["items"])
            if not isinstance(items, list):
                raise ValueError("items is not a list")
            return cls(impression_id=d["impression_id"], user_id=d["user_id"], items=tuple(str(i) for i in items),
                       ts=float(d["ts"]), region=d["region"], bundle_version=d["bundle_version"], tier=d.get("tier", ""),
                       experiment=d.get("experiment", ""), arm=d.get("arm", ""), surface=d.get("surface", "homepage"))
        except (KeyError, ValueError, TypeError) as exc:
            raise InputError("impression", f"malformed stream entry {d!r}: {exc}") from exc
