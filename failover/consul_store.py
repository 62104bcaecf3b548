"""The Consul control store, through py-consul (`import consul`), on loopback only.

Mapping of the ControlStore interface:
    key/value      KV under `prefix` (default 'shopnow/'); version = ModifyIndex, which only grows
    put(cas=)      KV PUT ?cas= (0 = only if absent), Consul returns false when it fails
    leases         one Consul session per (lease, holder) held in THIS process, with
                   behavior='release' and lock_delay=0; the lease key is `prefix + 'leases/' + name`,
                   taken with KV PUT ?acquire=<session>; term = the key's LockIndex, which grows
                   with each new holder
    fenced_put     one transaction: check-session on the lease key, then set / cas on the key
    register_service  agent service registration with HTTP and gRPC checks

Differences from SQLite that callers must know:
- Consul session TTLs are whole seconds in [10, 86400]; a shorter ttl_s is raised to 10 s, and
  Consul may take up to twice the TTL to invalidate a session. Takeover after a crash therefore
  takes 10-20 s on Consul against about one ttl_s on SQLite. `renew_lease` cannot change a TTL.
- A lease held by holder 'A' can be renewed or released only by the process that acquired it
  (the session id lives in that process).
- The clock is Consul's own: expiry is not computed here, so no `clock` parameter.

No Consul binary can be installed on the development machines: the contract tests run when
CONSUL_HTTP_ADDR names an agent and are skipped otherwise.
"""
from __future__ import annotations

import base64
import json
import math
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator
from urllib.parse import urlsplit

import consul
import requests
from consul.exceptions import ACLDisabled, ACLPermissionDenied, BadRequest, ClientError, ConsulException, NotFound

from failover.control_store import (
    LOOPBACK_HOSTS, ControlStore, Fence, FenceRejected, Lease, Versioned, check_cas, check_key, check_ttl,
    encode_value,
)
from regions.cas_retry import LOST, CasRetry, Lost
from regions.errors import InputError, PermanentError, TemporaryError

MIN_SESSION_TTL_S = 10
MAX_SESSION_TTL_S = 86400
DELETE_RETRY = CasRetry(attempts=20, backoff_s=0.005, max_backoff_s=0.1, exhausted=lambda n: TemporaryError(
    f"the key kept changing under an unconditional delete ({n} tries at the version seen); retry", delay=0.5))
"""An unconditional delete is a delete at the version just read; 20 lost races mean a writer loops on it."""


@dataclass(frozen=True)
class ConsulSettings:
    """Client settings; each default carries its reason."""

    request_timeout_s: float = 2.0
    """A local agent answers in milliseconds; 2 s is still shorter than a lease TTL, so a hung
    agent turns into TemporaryError before the leader's lease runs out unnoticed."""
    lock_delay_s: int = 0
    """Consul's default 15 s lock delay would stall every takeover; fencing makes it unneeded."""


def session_ttl_s(ttl_s: float) -> int:
    """The Consul session TTL for a requested lease TTL: whole seconds within Consul's bounds."""
    return min(MAX_SESSION_TTL_S, max(MIN_SESSION_TTL_S, math.ceil(check_ttl(ttl_s))))


def check_loopback_url(url: str, *, field: str) -> str:
    host = urlsplit(url if "//" in url else f"//{url}").hostname or ""
    if host not in LOOPBACK_HOSTS:
        raise InputError(field, f"{url!r} is not on loopback; only 127.0.0.1 may be checked")
    return url


class ConsulStore(ControlStore):
    """ControlStore over a Consul agent. `client` may be handed in (a consul.Consul)."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 8500, prefix: str = "shopnow/",
                 client: Any = None, settings: ConsulSettings = ConsulSettings()) -> None:
        if host not in LOOPBACK_HOSTS:
            raise InputError("host", f"{host!r} is not loopback; only 127.0.0.1 is allowed")
        if prefix.startswith("/"):
            raise InputError("prefix", f"{prefix!r} must not start with '/'")
        self.address = f"{host}:{port}"
        self.prefix = prefix
        self._settings = settings
        self._client = client or consul.Consul(host=host, port=port, connections_timeout=settings.request_timeout_s)
        self._sessions: dict[tuple[str, str], str] = {}
        self._lock = threading.RLock()

    # -- plumbing ----------------------------------------------------------------------------
    @contextmanager
    def _mapped(self, op: str) -> Iterator[None]:
        try:
            yield
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise TemporaryError(
                f"Consul agent at {self.address} is unreachable during {op}; start it or check the "
                "control store URL", delay=1.0,
            ) from exc
        except (ACLPermissionDenied, ACLDisabled) as exc:
            raise PermanentError(f"Consul refused {op} ({exc}); set CONSUL_HTTP_TOKEN to a token with kv, "
                                 "session and service write rights") from exc
        except BadRequest as exc:
            raise PermanentError(f"Consul rejected {op} as a bad request: {exc}") from exc
        except ConsulException as exc:
            raise TemporaryError(f"Consul failed during {op}: {exc}; retry shortly", delay=1.0) from exc

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def _lease_key(self, name: str) -> str:
        return f"{self.prefix}leases/{check_key(name, field='name')}"

    @staticmethod
    def _versioned(item: dict[str, Any]) -> Versioned:
        value = item.get("Value")
        return Versioned(value=bytes(value) if value is not None else b"", version=int(item["ModifyIndex"]))

    # -- keys and values ---------------------------------------------------------------------
    def get(self, key: str) -> Versioned | None:
        with self._mapped("get"):
            _, item = self._client.kv.get(self._key(key))
        return None if item is None else self._versioned(item)

    def put(self, key: str, value: bytes | str, *, cas: int | None = None) -> bool:
        full, data = self._key(key), encode_value(value)
        with self._mapped("put"):
            return bool(self._client.kv.put(full, data, cas=check_cas(cas)))

    def delete(self, key: str, *, cas: int | None = None) -> bool:
        full = self._key(key)
        if check_cas(cas) == 0:
            raise InputError("cas", "0 means 'only if absent', which cannot delete anything; pass a version > 0")
        with self._mapped("delete"):
            if cas is not None:
                return bool(self._client.kv.delete(full, cas=cas))
            def try_once() -> bool | Lost:  # Consul answers true for an absent key: delete at the version seen
                _, item = self._client.kv.get(full)
                if item is None:
                    return False
                return True if self._client.kv.delete(full, cas=int(item["ModifyIndex"])) else LOST

            return bool(DELETE_RETRY.run(try_once))

    def list(self, prefix: str) -> dict[str, Versioned]:
        if not isinstance(prefix, str):
            raise InputError("prefix", "must be a string ('' lists every key)")
        with self._mapped("list"):
            _, items = self._client.kv.get(self.prefix + prefix, recurse=True)
        found = {str(i["Key"])[len(self.prefix):]: self._versioned(i) for i in items or ()}
        return dict(sorted(found.items()))

    # -- leases ------------------------------------------------------------------------------
    def _live_session(self, name: str, holder: str) -> str | None:
        sid = self._sessions.get((name, holder))
        if sid is None:
            return None
        try:
            self._client.session.renew(sid)
        except NotFound:
            self._sessions.pop((name, holder), None)
            return None
        return sid

    def acquire_lease(self, name: str, holder: str, ttl_s: float) -> bool:
        key, ttl = self._lease_key(name), session_ttl_s(ttl_s)
        check_key(holder, field="holder")
        with self._lock, self._mapped("acquire_lease"):
            sid = self._live_session(name, holder)
            if sid is not None:
                return bool(self._client.kv.put(key, holder, acquire=sid))
            sid = self._client.session.create(
                name=f"{name}:{holder}", ttl=ttl, behavior="release", lock_delay=self._settings.lock_delay_s,
            )
            if self._client.kv.put(key, holder, acquire=sid):
                self._sessions[(name, holder)] = sid
                return True
            self._client.session.destroy(sid)
            return False

    def renew_lease(self, name: str, holder: str, ttl_s: float) -> bool:
        key = self._lease_key(name)
        check_ttl(ttl_s)
        with self._lock, self._mapped("renew_lease"):
            sid = self._live_session(name, holder)
            if sid is None:
                return False
            _, item = self._client.kv.get(key)
            return item is not None and item.get("Session") == sid

    def release_lease(self, name: str, holder: str) -> bool:
        key = self._lease_key(name)
        with self._lock, self._mapped("release_lease"):
            sid = self._sessions.pop((name, holder), None)
            if sid is None:
                return False
            released = bool(self._client.kv.put(key, holder, release=sid))
            self._client.session.destroy(sid)
            return released

    def lease_holder(self, name: str) -> Lease | None:
        key = self._lease_key(name)
        with self._mapped("lease_holder"):
            _, item = self._client.kv.get(key)
        if item is None or not item.get("Session"):
            return None
        return Lease(name=name, holder=(item.get("Value") or b"").decode("utf-8"), term=int(item["LockIndex"]))

    def fenced_put(self, key: str, value: bytes | str, *, fence: Fence, cas: int | None = None) -> bool:
        full, data, lease_key = self._key(key), encode_value(value), self._lease_key(fence.lease)
        check_cas(cas)
        with self._lock, self._mapped("fenced_put"):
            sid = self._sessions.get((fence.lease, fence.holder))
            _, item = self._client.kv.get(lease_key)
            if (sid is None or item is None or item.get("Session") != sid
                    or int(item.get("LockIndex", -1)) != fence.term):
                raise FenceRejected(fence, self.lease_holder(fence.lease))
            write: dict[str, Any] = {"Verb": "set", "Key": full, "Value": base64.b64encode(data).decode("ascii")}
            if cas is not None:
                write.update(Verb="cas", Index=cas)
            try:
                self._client.txn.put([{"KV": {"Verb": "check-session", "Key": lease_key, "Session": sid}},
                                      {"KV": write}])
            except ClientError as exc:
                failed_ops = _txn_failed_ops(str(exc))
                if failed_ops is None:
                    raise
                if 0 in failed_ops:
                    raise FenceRejected(fence, self.lease_holder(fence.lease)) from exc
                return False
            return True

    # -- service catalog ---------------------------------------------------------------------
    def register_service(
        self, name: str, *, port: int, http_check_url: str | None = None,
        grpc_check: str | None = None, interval_s: float = 2.0, service_id: str | None = None,
    ) -> bool:
        interval = f"{interval_s:g}s"
        checks: list[dict[str, Any]] = []
        if http_check_url:
            checks.append(consul.Check.http(check_loopback_url(http_check_url, field="http_check_url"),
                                            interval, timeout="1s"))
        if grpc_check:
            checks.append(consul.Check.grpc(check_loopback_url(grpc_check, field="grpc_check"),
                                            interval, timeout="1s"))
        with self._mapped("register_service"):
            return bool(self._client.agent.service.register(
                name, service_id=service_id or f"{name}-{port}", address="127.0.0.1", port=port,
                check=checks[0] if checks else None, extra_checks=checks[1:],
            ))

    def deregister_service(self, service_id: str) -> bool:
        with self._mapped("deregister_service"):
            return bool(self._client.agent.service.deregister(service_id))

    def close(self) -> None:
        with self._lock:
            for (name, holder) in list(self._sessions):
                try:
                    self.release_lease(name, holder)
                except TemporaryError:
                    pass  # the session's TTL ends it anyway
            self._client.http.close()


def _txn_failed_ops(message: str) -> set[int] | None:
    """Which operations of a rolled-back transaction failed, from py-consul's
    ClientError('409 {"Errors": [{"OpIndex": 0, "What": ...}]}'); None if not a rollback."""
    code, _, body = message.partition(" ")
    if code != "409":
        return None
    try:
        errors = json.loads(body).get("Errors") or []
        return {int(e["OpIndex"]) for e in errors}
    except (ValueError, AttributeError, KeyError, TypeError):
        return None
