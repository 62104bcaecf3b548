"""The control-store factory: a URL scheme -> opener registry over the backends of
failover.control_store.ControlStore.

    sqlite:///abs/path/control.db   absolute path
    sqlite://var/control.db         path relative to the working directory
    sqlite://:memory:               one process only (tests)
    consul://127.0.0.1:8500         a Consul agent on loopback; `?prefix=shopnow/` (default)
    etcd://127.0.0.1:2379,...       an etcd cluster's members on loopback; `?prefix=shopnow/` (default)

A new backend adds an opener with `register(scheme, opener)`; `store_from_url` lists the
registered schemes when it meets an unknown one. The backends are imported by their opener only,
so opening a SQLite store never imports py-consul or the etcd client.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable
from urllib.parse import parse_qs, urlsplit

from failover.control_store import LOOPBACK_HOSTS, ControlStore
from regions.errors import InputError

Clock = Callable[[], float]
Opener = Callable[[str, str, "Clock | None"], ControlStore]
"""opener(url, rest after "scheme://", clock) -> an open store."""

_OPENERS: dict[str, Opener] = {}


def register(scheme: str, opener: Opener) -> None:
    if not scheme.isalnum() or scheme != scheme.lower():
        raise InputError("scheme", f"must be lower-case letters and digits, got {scheme!r}")
    _OPENERS[scheme] = opener


def schemes() -> tuple[str, ...]:
    return tuple(sorted(_OPENERS))


def store_from_url(url: str, *, clock: Clock | None = None) -> ControlStore:
    """Open a store from a URL (see the module docstring). `clock` (seconds) is used where the
    backend computes expiry itself (SQLite)."""
    if not isinstance(url, str) or "://" not in url:
        raise InputError("store", f"{url!r} is not a store URL; use sqlite:///path/to/control.db, "
                                  "consul://127.0.0.1:8500 or etcd://127.0.0.1:2379,...")
    scheme, _, rest = url.partition("://")
    opener = _OPENERS.get(scheme)
    if opener is None:
        raise InputError("store", f"unknown scheme {scheme!r} in {url!r}; allowed: {', '.join(schemes())}")
    return opener(url, rest, clock)


def _open_sqlite(url: str, rest: str, clock: Clock | None) -> ControlStore:
    from failover.sqlite_store import SqliteStore

    if not rest:
        raise InputError("store", f"{url!r} names no file; use sqlite:///abs/path.db or sqlite://rel/path.db")
    path: str | Path = rest if rest == ":memory:" else Path(rest)
    return SqliteStore(path) if clock is None else SqliteStore(path, clock=clock)


def _open_consul(url: str, rest: str, clock: Clock | None) -> ControlStore:
    from failover.consul_store import ConsulStore

    parts = urlsplit(url)
    host = parts.hostname or ""
    if host not in LOOPBACK_HOSTS:
        raise InputError("store", f"Consul host {host!r} is not loopback; only 127.0.0.1 is allowed")
    try:
        port = parts.port or 8500
    except ValueError as exc:
        raise InputError("store", f"{url!r} has an invalid port; use consul://127.0.0.1:8500") from exc
    prefix = parse_qs(parts.query).get("prefix", ["shopnow/"])[0]
    return ConsulStore(host="127.0.0.1", port=port, prefix=prefix)


def _open_etcd(url: str, rest: str, clock: Clock | None) -> ControlStore:
    from failover.etcd_store import etcd_store_from_url

    return etcd_store_from_url(url)


register("sqlite", _open_sqlite)
register("consul", _open_consul)
register("etcd", _open_etcd)
