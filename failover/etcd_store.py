"""The etcd control store: a real distributed store, over etcd's v3 JSON gateway (etcd_gateway).

URL: `etcd://127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379[?prefix=shopnow/]` (loopback only).

Mapping of the ControlStore interface (all keys under `prefix`, default 'shopnow/'):
    key/value      `<prefix>kv/<key>`; version = the key's mod_revision, taken from the cluster's
                   one revision counter, which only grows (a deleted and re-created key never
                   reuses a version)
    put(cas=)      cas=None: a plain put; cas=0: a txn comparing create_revision == 0 (absent);
                   cas=N: a txn comparing mod_revision == N
    leases         `<prefix>leases/<name>` holds the holder's name, attached to an etcd lease of
                   ttl_s (whole seconds, at least etcd's minimum of 2 s): when the etcd lease runs
                   out, etcd deletes the key. term = the key's create_revision: each new holder
                   creates the key again, at a higher revision; the same holder keeps its term
    renew_lease    a keepalive of the etcd lease (its TTL is the one granted at acquisition)
    fenced_put     one txn: compare the lease key's create_revision == term and its value ==
                   holder (plus the CAS compare), else read the lease key to say why it failed
    watch          a /v3/watch stream from the revision after the one read: no change is missed
                   between the read and the watch

Differences from SQLite that callers must know:
- The clock is etcd's (its leader's): no `clock` parameter, `Lease.expires_at` is None.
- When the etcd leader changes, etcd restarts every lease's TTL: a controller that renews through
  an etcd leader change keeps its lease; one that crashed keeps it for up to one more TTL.
- Without quorum (2 of 3 members down) every call raises TemporaryError within about the
  request timeout: the controller stops writing and its lease runs out on its own clock.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from failover.control_store import (
    ControlStore, Fence, FenceRejected, Lease, Versioned, check_cas, check_key, check_ttl, encode_value,
)
from failover.etcd_gateway import (
    Gateway, GatewaySettings, LeaseNotFound, b64, parse_endpoints, prefix_end, unb64,
)
from regions.errors import InputError

DEFAULT_PREFIX = "shopnow/"
MIN_LEASE_TTL_S = 2
"""etcd raises shorter lease TTLs to 1.5 x its election timeout (1 s by default), rounded up."""


def lease_ttl_s(ttl_s: float) -> int:
    """The etcd lease TTL for a requested ttl_s: whole seconds, at least etcd's minimum."""
    return max(MIN_LEASE_TTL_S, math.ceil(check_ttl(ttl_s)))


@dataclass(frozen=True)
class _Kv:
    value: bytes
    mod_revision: int
    create_revision: int
    lease: int


def _kv(item: dict[str, Any]) -> _Kv:
    return _Kv(value=unb64(item.get("value")), mod_revision=int(item.get("mod_revision", 0)),
               create_revision=int(item.get("create_revision", 0)), lease=int(item.get("lease", 0)))


def _compare(key: bytes, target: str, value: int | bytes) -> dict[str, Any]:
    field = {"CREATE": "create_revision", "MOD": "mod_revision", "VALUE": "value"}[target]
    return {"key": b64(key), "target": target, "result": "EQUAL",
            field: b64(value) if isinstance(value, bytes) else str(value)}


def _cas_compares(key: bytes, cas: int | None) -> list[dict[str, Any]]:
    if cas is None:
        return []
    return [_compare(key, "CREATE", 0)] if cas == 0 else [_compare(key, "MOD", cas)]


class EtcdStore(ControlStore):
    """ControlStore over an etcd cluster (see the module docstring)."""

    def __init__(self, endpoints: str | tuple[str, ...], *, prefix: str = DEFAULT_PREFIX,
                 settings: GatewaySettings = GatewaySettings()) -> None:
        if not isinstance(prefix, str) or prefix.startswith("/"):
            raise InputError("prefix", f"{prefix!r} must be a string that does not start with '/'")
        self.endpoints = parse_endpoints(endpoints) if isinstance(endpoints, str) else tuple(endpoints)
        self.prefix = prefix
        self._gateway = Gateway(self.endpoints, settings=settings)

    # -- plumbing ----------------------------------------------------------------------------
    def _key(self, key: str) -> bytes:
        return f"{self.prefix}kv/{check_key(key)}".encode("utf-8")

    def _lease_key(self, name: str) -> bytes:
        return f"{self.prefix}leases/{check_key(name, field='name')}".encode("utf-8")

    def _range(self, key: bytes, *, op: str) -> tuple[_Kv | None, int]:
        """The key (or None) and the cluster revision at which it was read."""
        reply = self._gateway.call("/v3/kv/range", {"key": b64(key)}, op=op, idempotent=True)
        kvs = reply.get("kvs") or []
        revision = int((reply.get("header") or {}).get("revision", 0))
        return (_kv(kvs[0]) if kvs else None), revision

    def _txn(self, compares: list[dict[str, Any]], success: list[dict[str, Any]], failure: list[dict[str, Any]],
             *, op: str) -> tuple[bool, list[dict[str, Any]]]:
        reply = self._gateway.call("/v3/kv/txn", {"compare": compares, "success": success, "failure": failure},
                                   op=op, idempotent=False)
        return bool(reply.get("succeeded")), list(reply.get("responses") or [])

    def _put_request(self, key: bytes, value: bytes, *, lease: int = 0) -> dict[str, Any]:
        body: dict[str, Any] = {"key": b64(key), "value": b64(value)}
        if lease:
            body["lease"] = str(lease)
        return {"request_put": body}

    def _lease_from(self, name: str, kv: _Kv | None) -> Lease | None:
        if kv is None:
            return None
        return Lease(name=name, holder=kv.value.decode("utf-8", errors="replace"), term=kv.create_revision)

    def _keepalive(self, lease_id: int, *, op: str) -> bool:
        try:
            reply = self._gateway.call("/v3/lease/keepalive", {"ID": str(lease_id)}, op=op, idempotent=True)
        except LeaseNotFound:
            return False
        return int((reply.get("result") or reply).get("TTL", 0)) > 0

    def _revoke(self, lease_id: int, *, op: str) -> bool:
        try:
            self._gateway.call("/v3/lease/revoke", {"ID": str(lease_id)}, op=op, idempotent=True)
        except LeaseNotFound:
            return False
        return True

    # -- keys and values ---------------------------------------------------------------------
    def get(self, key: str) -> Versioned | None:
        kv, _ = self._range(self._key(key), op="get")
        return None if kv is None else Versioned(value=kv.value, version=kv.mod_revision)

    def put(self, key: str, value: bytes | str, *, cas: int | None = None) -> bool:
        full, data = self._key(key), encode_value(value)
        if check_cas(cas) is None:
            self._gateway.call("/v3/kv/put", {"key": b64(full), "value": b64(data)}, op="put", idempotent=False)
            return True
        ok, _ = self._txn(_cas_compares(full, cas), [self._put_request(full, data)], [], op="put")
        return ok

    def delete(self, key: str, *, cas: int | None = None) -> bool:
        full = self._key(key)
        if check_cas(cas) == 0:
            raise InputError("cas", "0 means 'only if absent', which cannot delete anything; pass a version > 0")
        request = {"request_delete_range": {"key": b64(full)}}
        ok, responses = self._txn(_cas_compares(full, cas), [request], [], op="delete")
        if not ok or not responses:
            return False
        return int(responses[0].get("response_delete_range", {}).get("deleted", 0)) > 0

    def list(self, prefix: str) -> dict[str, Versioned]:
        if not isinstance(prefix, str):
            raise InputError("prefix", "must be a string ('' lists every key)")
        base = f"{self.prefix}kv/".encode("utf-8")
        start = base + prefix.encode("utf-8")
        reply = self._gateway.call("/v3/kv/range", {"key": b64(start), "range_end": b64(prefix_end(start))},
                                   op="list", idempotent=True)
        found = {}
        for item in reply.get("kvs") or []:
            kv = _kv(item)
            found[unb64(item["key"])[len(base):].decode("utf-8")] = Versioned(value=kv.value, version=kv.mod_revision)
        return dict(sorted(found.items()))

    # -- leases ------------------------------------------------------------------------------
    def acquire_lease(self, name: str, holder: str, ttl_s: float) -> bool:
        key = self._lease_key(name)
        check_key(holder, field="holder")
        ttl = lease_ttl_s(ttl_s)
        current, _ = self._range(key, op="acquire_lease")
        if current is not None:
            if current.value != holder.encode("utf-8"):
                return False
            if self._keepalive(current.lease, op="acquire_lease"):
                return True
        grant = self._gateway.call("/v3/lease/grant", {"TTL": str(ttl)}, op="acquire_lease", idempotent=False)
        lease_id = int(grant["ID"])
        ok, _ = self._txn([_compare(key, "CREATE", 0)],
                          [self._put_request(key, holder.encode("utf-8"), lease=lease_id)], [], op="acquire_lease")
        if not ok:
            self._revoke(lease_id, op="acquire_lease")
        return ok

    def renew_lease(self, name: str, holder: str, ttl_s: float) -> bool:
        key = self._lease_key(name)
        check_ttl(ttl_s)
        current, _ = self._range(key, op="renew_lease")
        if current is None or current.value != holder.encode("utf-8"):
            return False
        return self._keepalive(current.lease, op="renew_lease")

    def release_lease(self, name: str, holder: str) -> bool:
        key = self._lease_key(name)
        current, _ = self._range(key, op="release_lease")
        if current is None or current.value != holder.encode("utf-8"):
            return False
        return self._revoke(current.lease, op="release_lease")

    def lease_holder(self, name: str) -> Lease | None:
        current, _ = self._range(self._lease_key(name), op="lease_holder")
        return self._lease_from(name, current)

    def fenced_put(self, key: str, value: bytes | str, *, fence: Fence, cas: int | None = None) -> bool:
        full, data, lease_key = self._key(key), encode_value(value), self._lease_key(fence.lease)
        check_cas(cas)
        compares = [_compare(lease_key, "CREATE", fence.term), _compare(lease_key, "VALUE", fence.holder.encode("utf-8")),
                    *_cas_compares(full, cas)]
        ok, responses = self._txn(compares, [self._put_request(full, data)],
                                  [{"request_range": {"key": b64(lease_key)}}], op="fenced_put")
        if ok:
            return True
        kvs = (responses[0].get("response_range") or {}).get("kvs") if responses else None
        current = self._lease_from(fence.lease, _kv(kvs[0]) if kvs else None)
        if current is None or current.holder != fence.holder or current.term != fence.term:
            raise FenceRejected(fence, current)
        return False  # the fence holds: only the compare-and-set failed

    # -- watch -------------------------------------------------------------------------------
    def watch(self, key: str, *, after_version: int, timeout_s: float) -> bool:
        """Block until `key`'s version is no longer `after_version` (True) or `timeout_s` passed
        (False). TemporaryError when the watch cannot be opened or breaks."""
        full = self._key(key)
        current, revision = self._range(full, op="watch")
        if (current.mod_revision if current else 0) != after_version:
            return True
        body = {"create_request": {"key": b64(full), "start_revision": str(revision + 1)}}
        for result in self._gateway.watch_events(body, timeout_s=timeout_s, op=f"watch {key}"):
            if result.get("events") or result.get("compact_revision"):
                return True  # changed (or history compacted past us): the caller reads again
        return False

    def close(self) -> None:
        self._gateway.close()


def etcd_store_from_url(url: str) -> EtcdStore:
    """`etcd://127.0.0.1:2379,127.0.0.1:22379[?prefix=shopnow/]` -> EtcdStore."""
    parts = urlsplit(url)
    if parts.scheme != "etcd" or not parts.netloc:
        raise InputError("store", f"{url!r} is not an etcd URL; use etcd://127.0.0.1:2379,127.0.0.1:22379,...")
    prefix = parse_qs(parts.query).get("prefix", [DEFAULT_PREFIX])[0]
    return EtcdStore(parts.netloc, prefix=prefix)
