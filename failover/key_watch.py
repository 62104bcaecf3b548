"""Following one control-store key: by the store's watch where it has one, polling otherwise.

    wait_for_change(...)   one wait between two reads: a watch (etcd) until the key changes or
                           `watch_timeout_s` passes; the poll interval's sleep when the store
                           cannot watch (SQLite, Consul) or while its watch is broken
    KeyFollower            a daemon thread that reads a key, then waits for its next change,
                           and keeps the newest value (the standby controller follows
                           routing/table with it; the edge's TableWatcher uses wait_for_change)

The read after each wake-up is what counts: a watch only says "read again", so a missed or
spurious event costs one read, never a wrong value. Reads that fail keep the last value.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

from failover.control_store import ControlStore, Versioned
from regions.errors import ShopNowError

log = logging.getLogger(__name__)

WATCH_TIMEOUT_S = 1.0
"""How long one watch waits before the key is read again anyway: bounds how long a watch that
broke silently (a member that hangs) can hide a change, and how long `stop()` takes."""

WATCH = "watch"
POLL = "poll"


def wait_for_change(store: ControlStore | None, key: str, *, after_version: int, watch_timeout_s: float,
                    poll_interval_s: float, stop: threading.Event) -> tuple[str, str]:
    """Wait once; returns (WATCH, "") when a watch was waited on, (POLL, why) when it slept
    `poll_interval_s` instead (why: "" when the store cannot watch, else the watch's error)."""
    why = ""
    if store is not None and not stop.is_set():
        try:
            if store.watch(key, after_version=after_version, timeout_s=watch_timeout_s) is not None:
                return WATCH, ""
        except ShopNowError as exc:
            why = str(exc)
    stop.wait(poll_interval_s)
    return POLL, why


def log_mode_change(key: str, old: str, new: str, why: str) -> None:
    """One log line when following `key` switches between watch and poll (not one per wait)."""
    if new != old and (new == WATCH or why):
        log.warning("following %s by %s%s", key, new, f" (watch broken: {why})" if why else "")


class FollowingThread:
    """start / alive / stop of a daemon thread running `self._run` until `self._stop` is set; shared
    by KeyFollower and the edge's TableWatcher. Subclasses set `_stop`, `_thread`, `_watch_timeout`."""

    _thread_name = "follow"
    _stop: threading.Event
    _thread: threading.Thread | None
    _watch_timeout: float

    def _run(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._thread_name, daemon=True)
            self._thread.start()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        """Stop and join; a wait in progress ends within `_watch_timeout` (a watch) or the poll interval."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._watch_timeout + 5)


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
