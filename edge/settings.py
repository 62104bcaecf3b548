"""The edge's settings: how it spends a request's budget and watches the routing table.

Read from the environment (REGIONCTL_EDGE_<FIELD>) by `settings_from_env`, which the edge's entry
point calls with `os.environ` (contracts.environment is the one loader).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from contracts.cell_api import MAX_COUNT
from contracts.environment import load_settings
from edge.ejection import EjectionPolicy
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
    events_first_attempt_share: float = 0.15
    """An event batch's first region gets 15 % of what is left (150 ms of the second): a Redis write
    takes milliseconds, and a batch whose first region never answers (a network cut) is then stored
    by the next one within the 180 ms SLO, not after 600 ms; the next gets the remaining 850 ms. A
    retry is safe: a batch is idempotent by event id."""
    connect_timeout_ms: float = 100.0
    """Opening a connection to a cell takes one loopback/veth round trip: give up on it after 100 ms
    (HTTP's connect timeout; gRPC's minimum connect timeout and first reconnect backoff, its backoff
    capped at 1 s), so a cell that cannot be reached fails its attempt fast and is found again soon."""
    ejection: bool = True
    """Passive outlier ejection of the cells this edge cannot reach (edge.ejection); off: never."""
    ejection_consecutive_failures: int = 5
    """Five failed attempts in a row eject a cell (a cut cell: well under a second of its share)."""
    ejection_window: int = 20
    ejection_failure_rate: float = 0.5
    """... or half of its last 20 attempts failed (a lossy link between successes)."""
    ejection_base_s: float = 5.0
    """The first ejection lasts 5 s, the n-th in a row n x 5 s; one real attempt then probes it."""
    ejection_max_s: float = 60.0
    ejection_max_percent: float = 50.0
    """At most half of a geography's regions ejected at once, never all (a one-region geography: none)."""
    ejection_peer_failure_rate: float = 0.25
    """No ejection while a peer of the geography failed a quarter or more of its own recent attempts:
    then the cause is the load (or this edge), not one cell (found at 300 req/s on 2 cores: the edge
    ejected the saturated survivors in turn, 25 times in 10 minutes, before this guard)."""
    default_count: int = 20
    """Homepage slate length when the client does not say."""
    max_count: int = MAX_COUNT
    """Same bound as a cell's API (contracts.cell_api.MAX_COUNT): a larger `count` is refused with 422."""
    transport: str = "grpc"
    """gRPC to the cells (one HTTP/2 connection each, deadlines built in); "http" uses their HTTP API."""

    def __post_init__(self) -> None:
        for name in ("poll_interval_s", "min_attempt_ms", "events_deadline_ms", "connect_timeout_ms",
                     "ejection_base_s", "ejection_max_s"):
            if not getattr(self, name) > 0:
                raise InputError(name, f"must be greater than 0, got {getattr(self, name)!r}")
        if self.cell_margin_ms < 0:
            raise InputError("cell_margin_ms", f"must be 0 or more, got {self.cell_margin_ms!r}")
        for name in ("personal_tries", "cross_geo_tries", "default_count", "max_count", "ejection_consecutive_failures",
                     "ejection_window"):
            least = 0 if name.endswith("tries") else 1
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise InputError(name, f"must be a whole number of at least {least}, got {value!r}")
        for name in ("first_attempt_share", "events_first_attempt_share", "ejection_failure_rate", "ejection_peer_failure_rate"):
            if not 0 < getattr(self, name) <= 1:
                raise InputError(name, f"must be in (0, 1], got {getattr(self, name)!r}")
        if not 0 <= self.ejection_max_percent <= 100:
            raise InputError("ejection_max_percent", f"must be in [0, 100], got {self.ejection_max_percent!r}")
        if self.ejection_max_s < self.ejection_base_s:
            raise InputError("ejection_max_s", f"must be at least ejection_base_s ({self.ejection_base_s}), "
                                               f"got {self.ejection_max_s!r}")
        if self.transport not in ("grpc", "http"):
            raise InputError("transport", f"{self.transport!r} is not a transport; use grpc or http")
        if self.max_count > MAX_COUNT:
            raise InputError("max_count", f"must not exceed the cell API's MAX_COUNT ({MAX_COUNT}), got {self.max_count}")
        if self.default_count > self.max_count:
            raise InputError("default_count", f"must not exceed max_count ({self.max_count}), got {self.default_count}")


def ejection_policy(settings: EdgeSettings) -> EjectionPolicy:
    return EjectionPolicy(enabled=settings.ejection, consecutive_failures=settings.ejection_consecutive_failures,
                          window=settings.ejection_window, failure_rate=settings.ejection_failure_rate,
                          base_s=settings.ejection_base_s, max_s=settings.ejection_max_s,
                          max_percent=settings.ejection_max_percent, peer_failure_rate=settings.ejection_peer_failure_rate)


def settings_from_env(environ: Mapping[str, str], base: EdgeSettings | None = None) -> EdgeSettings:
    """`base` with `REGIONCTL_EDGE_<FIELD>` values of `environ` applied; unknown keys are refused."""
    return load_settings(base or EdgeSettings(), environ, prefix=ENV_PREFIX, what="edge setting")
