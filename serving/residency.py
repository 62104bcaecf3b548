"""Whose personal data may a cell use for this homepage request?

A cell personalises only users homed in its own geography and not deleted. Any other request that
names a user is answered anonymously: the serving geography's segment list, then popularity,
never that user's features, embedding or cached slate (the cell does not even read them), and the
cell counts it (`shopnow_cell_anonymous_answers_total{reason}`):

    foreign_user   the user's home geography is not the cell's (e.g. an EU user asking a US cell
                   directly, or an edge that forgot `anonymous=true` during an eu-west loss)
    deleted_user   the user is tombstoned in this region (`users:deleted`)

`personalisation_refusal` is the pure decision. `TombstoneView` keeps the region's tombstones in
memory, refreshed every `refresh_s` by a background thread, so the check costs no Redis round trip
on the request path; a deletion reaches the gate within `refresh_s`. The slate cache itself does
not depend on that window: its write checks the tombstone inside Redis, in the same script as the
SET, one run of the script per slate even in a batch (serving.feature_store.FeatureStore.put_cached_slates).
"""
from __future__ import annotations

import logging
import threading
from typing import AbstractSet

from regions.geo import home_geography_of
from regions.topology import Topology
from replication.redis_io import Redis, RedisError
from replication.tombstones import tombstoned_users

log = logging.getLogger(__name__)

FOREIGN_USER = "foreign_user"
DELETED_USER = "deleted_user"
REASONS = (FOREIGN_USER, DELETED_USER)

TOMBSTONE_REFRESH_S = 2.0
"""A deletion stops personalisation from the bundle's embedding within 2 s; reading the tombstone
hash (HSCAN) every 2 s is negligible next to the cell's request load."""


def personalisation_refusal(topology: Topology, *, region: str, user_id: str, geography: str,
                            tombstones: AbstractSet[str]) -> str:
    """Pure. "" when the cell in `region` may personalise `user_id` (home `geography`, "" = derive
    it from the id), else the reason (FOREIGN_USER, DELETED_USER)."""
    home = geography or home_geography_of(user_id, topology)
    if home != topology.region(region).geography:
        return FOREIGN_USER
    if user_id in tombstones:
        return DELETED_USER
    return ""


class TombstoneView:
    """The region's deleted users, as last read from its Redis. `refresh()` reads once; `start()`
    refreshes in a daemon thread. An unreadable Redis keeps the last view (and logs it)."""

    def __init__(self, client: Redis, *, refresh_s: float = TOMBSTONE_REFRESH_S) -> None:
        self.client = client
        self.refresh_s = refresh_s
        self.users: frozenset[str] = frozenset()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> bool:
        try:
            users = tombstoned_users(self.client)
        except RedisError as exc:
            log.debug("tombstones not refreshed: %s", exc)
            return False
        self.users = users
        return True

    def start(self) -> None:
        self.refresh()
        self._thread = threading.Thread(target=self._run, name="tombstones", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.refresh_s):
            self.refresh()

    def stop(self) -> None:
        self._stop.set()


__all__ = ["DELETED_USER", "FOREIGN_USER", "REASONS", "TombstoneView", "personalisation_refusal"]
