"""The control store: a small key/value store with compare-and-set and leases.

The controller (leader and standby), drills and the operator CLI share their state through it:
the leader lease, steering overrides and the decision journal. Two backends implement the same
interface, swappable like httpx transports:

    sqlite   failover.sqlite_store.SqliteStore   embedded default; one file shared by the
                                                 controller processes of one machine
    consul   failover.consul_store.ConsulStore   a Consul agent on loopback (py-consul)
    etcd     failover.etcd_store.EtcdStore       an etcd cluster on loopback (v3 JSON gateway)

Choices every backend keeps:

- Values are bytes. `put` also takes `str` (stored as UTF-8); `Versioned.text` decodes.
- Versions come from one store-wide counter that only grows (like Consul's ModifyIndex), so a
  key that is deleted and created again never reuses a version (no ABA on compare-and-set).
- Compare-and-set: `put(key, value, cas=None)` writes unconditionally; `cas=0` writes only if
  the key is absent; `cas=N` writes only if the key's version is N. A failed CAS RETURNS False
  (it is an expected outcome of a race, not an error); I/O trouble raises.
- Leases: `acquire_lease(name, holder, ttl_s)` succeeds when the lease is free, expired, or
  already held by `holder`. Each change of holder bumps the lease's `term`, a fencing token
  that only grows. `fenced_put` writes only while `Fence(lease, holder, term)` still holds the
  lease, atomically, so a deposed leader's late write is refused with `FenceRejected`.

Following a key (`wait_for_change`, `log_mode_change`): one wait between two reads of a key, by
the store's watch where it has one (etcd), else the poll interval's sleep; the controller's
failover.key_watch.KeyFollower and the edge's TableWatcher both wait with it. The read after each
wake-up is what counts: a watch only says "read again", so a missed or spurious event costs one
read, never a wrong value.

Errors (see regions.errors): `TemporaryError` when the store is busy or unreachable,
`PermanentError` when retrying cannot help, `InputError` for a bad URL, key or ttl.
The environment is not read here: the edge (CLI, election_main) reads REGIONCTL_CONTROL_STORE
and hands the URL to `failover.control_stores.store_from_url` (the factory: a scheme -> opener
registry, kept out of this base so that the backends can import it without a circle).
"""
from __future__ import annotations

import abc
import logging
import threading
from dataclasses import dataclass
from types import TracebackType

from regions.errors import InputError, PermanentError, ShopNowError

ENV_VAR = "REGIONCTL_CONTROL_STORE"
"""The one environment variable naming the store; read by the CLI and the runnables only."""
DEFAULT_STORE_URL = "sqlite://var/control.db"
"""Embedded default: needs no server, and `regionctl up` keeps its state under var/."""
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost"})
MAX_KEY_LENGTH = 512
"""Consul rejects very long keys; keep both backends to the same limit."""


@dataclass(frozen=True)
class Versioned:
    """A value and the version it was written at (store-wide, only grows)."""

    value: bytes
    version: int

    @property
    def text(self) -> str:
        return self.value.decode("utf-8")


@dataclass(frozen=True)
class Lease:
    """Who holds a lease now. `term` is the fencing token; `expires_at` is in the store's clock
    (None where the backend does not expose it, as with Consul sessions)."""

    name: str
    holder: str
    term: int
    expires_at: float | None = None


@dataclass(frozen=True)
class Fence:
    """What a leader presents with a write: the lease it holds, as whom, and in which term."""

    lease: str
    holder: str
    term: int


class FenceRejected(PermanentError):
    """A fenced write came from a holder that no longer holds the lease (deposed leader).
    Retrying the same write cannot succeed: campaign again and re-decide."""

    def __init__(self, fence: Fence, current: Lease | None) -> None:
        now = f"held by {current.holder!r} in term {current.term}" if current else "not held by anyone"
        super().__init__(
            f"write refused: lease {fence.lease!r} is {now}, not by {fence.holder!r} in term {fence.term}; "
            "this process is no longer the leader and must not write"
        )
        self.fence = fence
        self.current = current


def encode_value(value: bytes | str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    raise InputError("value", f"must be bytes or str, got {type(value).__name__}")


def check_key(key: str, *, field: str = "key") -> str:
    """Keys are non-empty, relative ('a/b', not '/a/b'), at most MAX_KEY_LENGTH characters."""
    if not isinstance(key, str) or not key:
        raise InputError(field, "must be a non-empty string such as 'journal/000001'")
    if key.startswith("/"):
        raise InputError(field, f"{key!r} must not start with '/'; use a relative key such as 'a/b'")
    if len(key) > MAX_KEY_LENGTH:
        raise InputError(field, f"is {len(key)} characters long; at most {MAX_KEY_LENGTH} are allowed")
    return key


def check_cas(cas: int | None) -> int | None:
    if cas is not None and (isinstance(cas, bool) or not isinstance(cas, int) or cas < 0):
        raise InputError("cas", f"must be None, 0 (only if absent) or a version > 0, got {cas!r}")
    return cas


def check_ttl(ttl_s: float) -> float:
    if not isinstance(ttl_s, (int, float)) or isinstance(ttl_s, bool) or not 0 < ttl_s <= 86400:
        raise InputError("ttl_s", f"must be a number of seconds in (0, 86400], got {ttl_s!r}")
    return float(ttl_s)


class ControlStore(abc.ABC):
    """The interface of every backend. Implementations are thread-safe."""

    # -- keys and values ------------------------------------------------------------------
    @abc.abstractmethod
    def get(self, key: str) -> Versioned | None:
        """The value and version of `key`, or None when absent."""

    @abc.abstractmethod
    def put(self, key: str, value: bytes | str, *, cas: int | None = None) -> bool:
        """Write `value`. `cas=None`: always; `cas=0`: only if absent; `cas=N`: only if the
        version is N. Returns False when the compare-and-set failed, True when written."""

    @abc.abstractmethod
    def delete(self, key: str, *, cas: int | None = None) -> bool:
        """Delete `key` (at version `cas` if given). True if a key was deleted."""

    @abc.abstractmethod
    def list(self, prefix: str) -> dict[str, Versioned]:
        """Every key starting with `prefix` (may be ''), in key order."""

    # -- leases ----------------------------------------------------------------------------
    @abc.abstractmethod
    def acquire_lease(self, name: str, holder: str, ttl_s: float) -> bool:
        """Take lease `name` for `holder` if it is free, expired or already `holder`'s."""

    @abc.abstractmethod
    def renew_lease(self, name: str, holder: str, ttl_s: float) -> bool:
        """Extend `holder`'s unexpired lease by `ttl_s` from now. False if it was lost."""

    @abc.abstractmethod
    def release_lease(self, name: str, holder: str) -> bool:
        """Give the lease up so that a standby need not wait for the TTL. False if not held."""

    @abc.abstractmethod
    def lease_holder(self, name: str) -> Lease | None:
        """The current, unexpired holder of lease `name`, or None."""

    @abc.abstractmethod
    def fenced_put(self, key: str, value: bytes | str, *, fence: Fence, cas: int | None = None) -> bool:
        """`put`, atomically conditional on `fence` still holding its lease.
        Raises FenceRejected when it does not; returns False when only the CAS failed."""

    # -- watch -----------------------------------------------------------------------------
    def watch(self, key: str, *, after_version: int, timeout_s: float) -> bool | None:
        """Block until `key`'s version differs from `after_version` (True) or `timeout_s` passed
        (False), where the backend can watch (etcd). None: it cannot, and the caller polls
        (SQLite, Consul). TemporaryError while a watch cannot be opened: poll meanwhile."""
        return None

    # -- service catalog -------------------------------------------------------------------
    def register_service(
        self, name: str, *, port: int, http_check_url: str | None = None,
        grpc_check: str | None = None, interval_s: float = 2.0, service_id: str | None = None,
    ) -> bool:
        """Register a service with health checks where the backend has a catalog (Consul).
        Returns False where it has none (SQLite): the controller's own probes are then the only
        health source, which is the default of the local stack."""
        return False

    def deregister_service(self, service_id: str) -> bool:
        """Remove a registered service; False where the backend has no catalog."""
        return False

    # -- lifetime --------------------------------------------------------------------------
    def close(self) -> None:
        """Release connections. The store must not be used afterwards."""

    def __enter__(self) -> ControlStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


# -- following a key ------------------------------------------------------------------------------

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
