"""FollowingThread: start / alive / stop of a daemon thread that follows something (a control-store
key) until stopped; shared by failover.key_watch.KeyFollower and edge.table_watcher.TableWatcher."""
from __future__ import annotations

import threading


class FollowingThread:
    """Runs `self._run` in a daemon thread until `self._stop` is set. Subclasses set `_stop`,
    `_thread` (None), `_watch_timeout` (the longest one wait lasts) and may set `_thread_name`."""

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
