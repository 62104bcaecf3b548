"""Following one control-store key: by the store's watch where it has one, polling otherwise.

    KeyFollower            a daemon thread that reads a key, then waits for its next change
                           (failover.control_store.wait_for_change), and keeps the newest value
                           (every controller follows routing/table with it; the edge's
                           edge.table_watcher.TableWatcher uses wait_for_change the same way)

The read after each wake-up is what counts: a watch only says "read again", so a missed or
spurious event costs one read, never a wrong value. Reads that fail keep the last value.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

from failover.control_store import WATCH_TIMEOUT_S, ControlStore, Versioned, log_mode_change, wait_for_change
from regions.errors import ShopNowError
from regions.following_thread import FollowingThread

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Followed:
    """What a KeyFollower knows now."""

    value: Versioned | None = None
    seen_at: float | None = None
    """Wall-clock time this follower first read `value`'s version."""
    mode: str = ""
    """WATCH or POLL: how the last wait was done ("" before the first)."""
    reads: int = 0
    error: str = ""
    """The last read's problem ("" when it was fine)."""


class KeyFollower(FollowingThread):
    """Keep the newest value of `key` in `state`, read after every change (see the module docstring)."""

    def __init__(self, store: ControlStore, key: str, *, poll_interval_s: float,
                 watch_timeout_s: float = WATCH_TIMEOUT_S, clock: Callable[[], float] = time.time,
                 on_change: Callable[[Followed], None] | None = None) -> None:
        self._store, self._key = store, key
        self._poll, self._watch_timeout = poll_interval_s, watch_timeout_s
        self._clock, self._on_change = clock, on_change
        self.state = Followed()
        self._stop = threading.Event()
        self._thread = None
        self._thread_name = f"follow-{key}"

    def read_once(self) -> Followed:
        state = self.state
        try:
            found = self._store.get(self._key)
        except ShopNowError as exc:
            self.state = new = Followed(state.value, state.seen_at, state.mode, state.reads + 1, str(exc))
            return new
        changed = (found.version if found else 0) != (state.value.version if state.value else 0)
        self.state = new = Followed(found, self._clock() if changed else state.seen_at, state.mode, state.reads + 1)
        if changed and self._on_change is not None:
            self._on_change(new)
        return new

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                state = self.read_once()
                mode, why = wait_for_change(self._store, self._key,
                                            after_version=state.value.version if state.value else 0,
                                            watch_timeout_s=self._watch_timeout, poll_interval_s=self._poll,
                                            stop=self._stop)
                s = self.state
                log_mode_change(self._key, s.mode, mode, why)
                self.state = Followed(s.value, s.seen_at, mode, s.reads, s.error)
            except Exception:  # a bug must not stop the follower: log it and keep the last value
                log.exception("following %s failed; keeping the last value", self._key)
                self._stop.wait(self._poll)
