"""The embedded control store: one SQLite file shared by the controller processes of a machine.

WAL mode lets readers run beside the one writer; every write is a `BEGIN IMMEDIATE`
transaction, so compare-and-set, lease acquisition and fenced writes are atomic across
processes (the write lock is taken before the condition is read). Expiry is computed with the
injected `clock` (seconds); all processes sharing a file must use the same kind of clock,
which is why the default is the wall clock (`time.time`).

Tables:
    meta(name, value)                    'index': the store-wide version counter
    kv(key, value, version)              values as BLOBs
    leases(name, holder, term, expires_at)
        a released or expired lease keeps its row (holder NULL or expires_at in the past),
        so that `term` keeps growing across holders

sqlite3 errors are translated here: busy/locked and I/O trouble -> TemporaryError, anything
else (cannot open, not a database, read-only) -> PermanentError, raised `from` the original.
"""
from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from failover.control_store import (
    ControlStore, Fence, FenceRejected, Lease, Versioned, check_cas, check_key, check_ttl, encode_value,
)
from regions.errors import InputError, PermanentError, ShopNowError, TemporaryError

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO meta (name, value) VALUES ('index', 0)",
    "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL, version INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS leases (name TEXT PRIMARY KEY, holder TEXT, term INTEGER NOT NULL,"
    " expires_at REAL NOT NULL)",
)
_TEMPORARY_CODES = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_IOERR", "SQLITE_FULL", "SQLITE_PROTOCOL")


@dataclass(frozen=True)
class SqliteSettings:
    """Connection settings; each default carries its reason."""

    busy_timeout_s: float = 1.0
    """Our write transactions last milliseconds; waiting longer than a third of the 3 s lease
    TTL would make a renewal late, so give up with TemporaryError and let the loop retry."""
    synchronous: str = "FULL"
    """An acknowledged journal entry or override survives a power cut; writes are a few per
    second at most, so the fsync per commit costs nothing that matters."""


def translate_error(exc: sqlite3.Error, *, op: str, path: str) -> ShopNowError:
    """Map a sqlite3 error to the project's tree (the caller raises it `from exc`)."""
    code = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc)
    if code.startswith(_TEMPORARY_CODES) or "locked" in text or "busy" in text:
        return TemporaryError(
            f"control store {path} is busy or unavailable during {op} ({code or text}); retry shortly", delay=0.1,
        )
    if code.startswith("SQLITE_CANTOPEN"):
        return PermanentError(
            f"cannot open control store {path} during {op} ({text}); check that the directory exists and is "
            "writable, or point REGIONCTL_CONTROL_STORE elsewhere"
        )
    return PermanentError(f"control store {path} failed during {op}: {code or type(exc).__name__}: {text}")


class SqliteStore(ControlStore):
    """ControlStore over one SQLite file (or ':memory:' for a single process)."""

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time,
                 settings: SqliteSettings = SqliteSettings()) -> None:
        self.path = str(path)
        self._clock = clock
        self._settings = settings
        self._lock = threading.RLock()
        if self.path != ":memory:":
            try:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise PermanentError(f"cannot create the directory of control store {self.path}: {exc}") from exc
        try:
            self._conn = sqlite3.connect(
                self.path, timeout=settings.busy_timeout_s, isolation_level=None, check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise translate_error(exc, op="open", path=self.path) from exc
        with self._mapped("open"):
            self._conn.execute(f"PRAGMA busy_timeout = {int(settings.busy_timeout_s * 1000)}")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute(f"PRAGMA synchronous = {settings.synchronous}")
        with self._tx("create schema") as conn:
            for statement in _SCHEMA:
                conn.execute(statement)

    # -- plumbing ----------------------------------------------------------------------------
    @contextmanager
    def _mapped(self, op: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise translate_error(exc, op=op, path=self.path) from exc

    @contextmanager
    def _tx(self, op: str) -> Iterator[sqlite3.Connection]:
        """One write transaction holding the database's write lock from its first statement."""
        with self._lock, self._mapped(op):
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @staticmethod
    def _next_version(conn: sqlite3.Connection) -> int:
        row = conn.execute("UPDATE meta SET value = value + 1 WHERE name = 'index' RETURNING value").fetchone()
        return int(row[0])

    @staticmethod
    def _cas_ok(conn: sqlite3.Connection, key: str, cas: int | None) -> bool:
        if cas is None:
            return True
        row = conn.execute("SELECT version FROM kv WHERE key = ?", (key,)).fetchone()
        return row is None if cas == 0 else (row is not None and int(row[0]) == cas)

    def _write(self, conn: sqlite3.Connection, key: str, value: bytes, cas: int | None) -> bool:
        if not self._cas_ok(conn, key, cas):
            return False
        version = self._next_version(conn)
        conn.execute(
            "INSERT INTO kv (key, value, version) VALUES (?, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value, version = excluded.version",
            (key, value, version),
        )
        return True

    def _current_lease(self, conn: sqlite3.Connection, name: str, now: float) -> Lease | None:
        row = conn.execute("SELECT holder, term, expires_at FROM leases WHERE name = ?", (name,)).fetchone()
        if row is None or row[0] is None or float(row[2]) <= now:
            return None
        return Lease(name=name, holder=str(row[0]), term=int(row[1]), expires_at=float(row[2]))

    # -- keys and values ---------------------------------------------------------------------
    def get(self, key: str) -> Versioned | None:
        check_key(key)
        with self._lock, self._mapped("get"):
            row = self._conn.execute("SELECT value, version FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else Versioned(value=bytes(row[0]), version=int(row[1]))

    def put(self, key: str, value: bytes | str, *, cas: int | None = None) -> bool:
        check_key(key)
        check_cas(cas)
        data = encode_value(value)
        with self._tx("put") as conn:
            return self._write(conn, key, data, cas)

    def delete(self, key: str, *, cas: int | None = None) -> bool:
        check_key(key)
        if check_cas(cas) == 0:
            raise InputError("cas", "0 means 'only if absent', which cannot delete anything; pass a version > 0")
        with self._tx("delete") as conn:
            if cas is None:
                return conn.execute("DELETE FROM kv WHERE key = ?", (key,)).rowcount > 0
            return conn.execute("DELETE FROM kv WHERE key = ? AND version = ?", (key, cas)).rowcount > 0

    def list(self, prefix: str) -> dict[str, Versioned]:
        if not isinstance(prefix, str):
            raise InputError("prefix", "must be a string ('' lists every key)")
        with self._lock, self._mapped("list"):
            rows = self._conn.execute(
                "SELECT key, value, version FROM kv WHERE substr(key, 1, ?) = ? ORDER BY key",
                (len(prefix), prefix),
            ).fetchall()
        return {str(k): Versioned(value=bytes(v), version=int(n)) for k, v, n in rows}

    # -- leases ------------------------------------------------------------------------------
    def acquire_lease(self, name: str, holder: str, ttl_s: float) -> bool:
        check_key(name, field="name")
        check_key(holder, field="holder")
        ttl = check_ttl(ttl_s)
        with self._tx("acquire_lease") as conn:
            now = self._clock()
            row = conn.execute("SELECT holder, term, expires_at FROM leases WHERE name = ?", (name,)).fetchone()
            if row is None:
                conn.execute("INSERT INTO leases (name, holder, term, expires_at) VALUES (?, ?, 1, ?)",
                             (name, holder, now + ttl))
                return True
            current, term, expires_at = row[0], int(row[1]), float(row[2])
            if current == holder and expires_at > now:
                conn.execute("UPDATE leases SET expires_at = ? WHERE name = ?", (now + ttl, name))
                return True
            if current is not None and expires_at > now:
                return False
            conn.execute("UPDATE leases SET holder = ?, term = ?, expires_at = ? WHERE name = ?",
                         (holder, term + 1, now + ttl, name))
            return True

    def renew_lease(self, name: str, holder: str, ttl_s: float) -> bool:
        check_key(name, field="name")
        ttl = check_ttl(ttl_s)
        with self._tx("renew_lease") as conn:
            now = self._clock()
            cur = conn.execute(
                "UPDATE leases SET expires_at = ? WHERE name = ? AND holder = ? AND expires_at > ?",
                (now + ttl, name, holder, now),
            )
            return cur.rowcount > 0

    def release_lease(self, name: str, holder: str) -> bool:
        check_key(name, field="name")
        with self._tx("release_lease") as conn:
            now = self._clock()
            cur = conn.execute(
                "UPDATE leases SET holder = NULL, expires_at = ? WHERE name = ? AND holder = ? AND expires_at > ?",
                (now, name, holder, now),
            )
            return cur.rowcount > 0

    def lease_holder(self, name: str) -> Lease | None:
        check_key(name, field="name")
        with self._lock, self._mapped("lease_holder"):
            return self._current_lease(self._conn, name, self._clock())

    def fenced_put(self, key: str, value: bytes | str, *, fence: Fence, cas: int | None = None) -> bool:
        check_key(key)
        check_cas(cas)
        data = encode_value(value)
        with self._tx("fenced_put") as conn:
            current = self._current_lease(conn, fence.lease, self._clock())
            if current is None or current.holder != fence.holder or current.term != fence.term:
                raise FenceRejected(fence, current)
            return self._write(conn, key, data, cas)

    def close(self) -> None:
        with self._lock:
            self._conn.close()
