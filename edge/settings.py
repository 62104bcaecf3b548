"""The edge's settings: how it spends a request's budget and watches the routing table.

Read from the environment (REGIONCTL_EDGE_<FIELD>) by `settings_from_env`, which the edge's entry
point calls with `os.environ` (contracts.environment is the one loader).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from contracts.cell_api import MAX_COUNT
from contracts.environment import load_settings
from regions.errors import InputError

ENV_PREFIX = "REGIONCTL_EDGE_"


@dataclass(frozen=True, kw_only=True)
class EdgeSettings:
    """How the edge spends a request's budget and watches the table; each default carries its reason."""

    poll_interval_s: float = 0.15
    """Read `routing/table` every 150 ms: a new table is in use well within the 1 s steering promise."""
    personal_tries: int = 2
    """The chosen region, then ONE retry on another region of the same geography."""
    cross_geo_tries: int = 1
    """One anonymous ask to another geography before the edge's own popularity list."""
    first_attempt_share: float = 0.6
    """A slow first cell may use 60 % of the budget, leaving time for the retry (and its ladder)."""
    min_attempt_ms: float = 5.0
    """Below 5 ms a cell cannot answer over gRPC; serve the last-resort list instead of trying."""
    cell_margin_ms: float = 3.0
    """The cell is told its deadline 3 ms before the gRPC deadline, so its answer can travel back."""
    events_deadline_ms: float = 1000.0
    """Event writes are not on the homepage path; a second covers a Redis AOF write and one retry."""
    default_count: int = 20
    """Homepage slate length when the client does not say."""
    max_count: int = MAX_COUNT
    """Same bound as a cell's API (contracts.cell_api.MAX_COUNT): a larger `count` is refused with 422."""
    transport: str = "grpc"
    """gRPC to the cells (one HTTP/2 connection each, deadlines built in); "http" uses their HTTP API."""

    def __post_init__(self) -> None:
        for name in ("poll_interval_s", "min_attempt_ms", "events_deadline_ms"):
            if not getattr(self, name) > 0:
                raise InputError(name, f"must be greater than 0, got {getattr(self, name)!r}")
        if self.cell_margin_ms < 0:
            raise InputError("cell_margin_ms", f"must be 0 or more, got {self.cell_margin_ms!r}")
        for name in ("personal_tries", "cross_geo_tries", "default_count", "max_count"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (1 if "count" in name else 0):
                raise InputError(name, f"must be a whole number of at least {1 if 'count' in name else 0}, got {value!r}")
        if not 0 < self.first_attempt_share <= 1:
            raise InputError("first_attempt_share", f"must be in (0, 1], got {self.first_attempt_share!r}")
        if self.transport not in ("grpc", "http"):
            raise InputError("transport", f"{self.transport!r} is not a transport; use grpc or http")
        if self.max_count > MAX_COUNT:
            raise InputError("max_count", f"must not exceed the cell API's MAX_COUNT ({MAX_COUNT}), got {self.max_count}")
        if self.default_count > self.max_count:
            raise InputError("default_count", f"must not exceed max_count ({self.max_count}), got {self.default_count}")


def settings_from_env(environ: Mapping[str, str], base: EdgeSettings | None = None) -> EdgeSettings:
    """`base` with `REGIONCTL_EDGE_<FIELD>` values of `environ` applied; unknown keys are refused."""
    return load_settings(base or EdgeSettings(), environ, prefix=ENV_PREFIX, what="edge setting")
