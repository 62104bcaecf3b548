"""A thin client of etcd's v3 JSON gateway (`/v3/...` on each member's client port), on httpx.

Why our own client and not a library (checked on PyPI for this project):
- etcd3 0.12.0 (2020, unmaintained) ships protobuf code generated for protobuf 3; the venv has
  protobuf 7 and grpcio 1.85, which refuse that code without the slow pure-Python fallback.
- aetcd 1.0.0 is asyncio-only, and the controller, CLI and edge watcher call the store from threads.
- etcd3gw 2.7.0 speaks the same JSON gateway but to ONE endpoint (no failover across members),
  pulls requests + futurist + pbr, and its watch runs a thread per watch with no way to learn that
  the stream broke. The five calls the control store needs fit in one module on httpx, which the
  project already uses.

What this client does:
- keys and values are bytes, base64 on the wire; 64-bit numbers arrive as JSON strings;
- endpoints `host:port,host:port,...`: a call goes to the member that answered last; when it
  cannot be reached (connect error) or says it has no leader, the next member is tried. A write
  whose outcome is unknown (the member took the request, then timed out) is NOT re-sent elsewhere:
  it raises TemporaryError, so a compare-and-set never reports a lost race that it actually won;
- every request carries gRPC metadata `hasleader=true` (header `Grpc-Metadata-hasleader`), so a
  member cut off from quorum answers "no leader" at once instead of holding the call;
- errors are mapped here: unreachable / no leader / timeout -> TemporaryError; invalid argument,
  permission, unauthenticated -> PermanentError; "lease not found" -> LeaseNotFound
  (a PermanentError the store turns into "the lease is gone").
"""
from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterator

import httpx

from regions.errors import InputError, PermanentError, TemporaryError

_TEMPORARY_GRPC_CODES = frozenset({1, 4, 8, 10, 13, 14})
"""CANCELLED, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED, INTERNAL, UNAVAILABLE."""
_NO_LEADER_MARKERS = ("no leader", "not capable", "leader changed", "stopped")
"""Answers from a member that did not apply the request: safe to try another member."""


@dataclass(frozen=True)
class GatewaySettings:
    """Client settings; each default carries its reason."""

    request_timeout_s: float = 1.0
    """A healthy loopback cluster answers in milliseconds; one third of the 3 s leader lease, so a
    stuck member becomes TemporaryError and the next member is tried before the lease runs out."""
    connect_timeout_s: float = 0.3
    """Loopback connects take microseconds; a refused or black-holed member is skipped quickly."""


class LeaseNotFound(PermanentError):
    """etcd does not know the lease (it expired or was revoked)."""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


def prefix_end(prefix: bytes) -> bytes:
    """The smallest key after every key that starts with `prefix` (etcd's range_end for a prefix)."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\x00"  # every key


def parse_endpoints(text: str) -> tuple[str, ...]:
    """`127.0.0.1:2379,127.0.0.1:22379` -> base URLs. Only loopback hosts are allowed."""
    from failover.control_store import LOOPBACK_HOSTS

    endpoints = []
    for part in (p.strip() for p in text.split(",")):
        host, sep, port = part.rpartition(":")
        if not part or not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise InputError("store", f"etcd endpoint {part!r} must be host:port, e.g. 127.0.0.1:2379")
        if host not in LOOPBACK_HOSTS:
            raise InputError("store", f"etcd host {host!r} is not loopback; only 127.0.0.1 is allowed")
        endpoints.append(f"http://127.0.0.1:{int(port)}")
    return tuple(dict.fromkeys(endpoints))


def grpc_error(body: Any) -> tuple[int, str] | None:
    """(code, message) of a gateway error body {"error", "code", "message"}, else None."""
    if isinstance(body, dict) and "code" in body and ("error" in body or "message" in body):
        try:
            return int(body["code"]), str(body.get("message") or body.get("error"))
        except (TypeError, ValueError):
            return None
    return None


class Gateway:
    """Calls to a cluster's JSON gateway with failover across its members. Thread-safe."""

    def __init__(self, endpoints: tuple[str, ...], *, settings: GatewaySettings = GatewaySettings()) -> None:
        if not endpoints:
            raise InputError("store", "an etcd URL needs at least one endpoint, e.g. etcd://127.0.0.1:2379")
        self.endpoints = endpoints
        self.settings = settings
        self._timeout = httpx.Timeout(settings.request_timeout_s, connect=settings.connect_timeout_s)
        self._client = httpx.Client(timeout=self._timeout, headers={"Grpc-Metadata-hasleader": "true"})
        self._lock = threading.Lock()
        self._current = 0

    def _order(self) -> list[int]:
        with self._lock:
            start = self._current
        return [(start + n) % len(self.endpoints) for n in range(len(self.endpoints))]

    def _prefer(self, index: int) -> None:
        with self._lock:
            self._current = index

    def call(self, path: str, body: dict[str, Any], *, op: str, idempotent: bool) -> dict[str, Any]:
        """POST `body` to `path` on a member; the decoded reply. See the module docstring for which
        failures move on to the next member (`idempotent` calls may also move on after a timeout)."""
        problems: list[str] = []
        for index in self._order():
            base = self.endpoints[index]
            try:
                reply = self._client.post(base + path, json=body)
            except httpx.ConnectError as exc:
                problems.append(f"{base}: unreachable ({exc})")
                continue
            except httpx.TimeoutException as exc:
                if idempotent or isinstance(exc, httpx.ConnectTimeout):
                    problems.append(f"{base}: timed out")
                    continue
                raise TemporaryError(f"etcd member {base} timed out during {op}; the write may or may not have "
                                     "been applied, read again before retrying", delay=0.2) from exc
            except httpx.HTTPError as exc:
                if idempotent:
                    problems.append(f"{base}: {type(exc).__name__}: {exc}")
                    continue
                raise TemporaryError(f"etcd member {base} failed during {op}: {exc}", delay=0.2) from exc
            try:
                decoded = reply.json()
            except ValueError:
                decoded = None
            error = grpc_error(decoded)
            if error is None and reply.status_code == 200 and isinstance(decoded, dict):
                self._prefer(index)
                return decoded
            code, message = error or (-1, f"HTTP {reply.status_code}: {reply.text[:200]}")
            if code == 5 and "lease not found" in message:
                raise LeaseNotFound(f"etcd: {message} (during {op})")
            if code in (3, 7, 16, 9, 11) or (error is None and 400 <= reply.status_code < 500):
                raise PermanentError(f"etcd refused {op}: {message}")
            if any(marker in message for marker in _NO_LEADER_MARKERS) or idempotent:
                problems.append(f"{base}: {message}")
                continue
            raise TemporaryError(f"etcd member {base} failed during {op}: {message}", delay=0.2)
        raise TemporaryError(f"no etcd member could serve {op}: {'; '.join(problems)}", delay=0.5)

    def watch_events(self, body: dict[str, Any], *, timeout_s: float, op: str) -> Iterator[dict[str, Any]]:
        """Open a watch stream (`/v3/watch`, one create_request) on a member and yield each decoded
        `result` after the `created` one, until `timeout_s` passes (then the generator ends).
        Raises TemporaryError when no member accepts the watch or the stream breaks or is canceled."""
        problems: list[str] = []
        deadline = time.monotonic() + timeout_s
        for index in self._order():
            base = self.endpoints[index]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            timeout = httpx.Timeout(remaining, connect=self.settings.connect_timeout_s)
            try:
                with self._client.stream("POST", base + "/v3/watch", json=body, timeout=timeout) as reply:
                    if reply.status_code != 200:
                        problems.append(f"{base}: HTTP {reply.status_code}")
                        continue
                    created = False
                    for line in reply.iter_lines():
                        if not line.strip():
                            continue
                        message = json.loads(line)
                        error = grpc_error(message.get("error")) or grpc_error(message)
                        if error is not None:
                            raise TemporaryError(f"etcd watch on {base} failed: {error[1]}", delay=0.2)
                        result = message.get("result") or {}
                        if result.get("canceled") and not result.get("compact_revision"):
                            raise TemporaryError(f"etcd watch on {base} was canceled: "
                                                 f"{result.get('cancel_reason') or 'member lost its leader'}", delay=0.2)
                        if result.get("created") and not created:
                            created = True
                            self._prefer(index)
                            if not result.get("events"):
                                continue
                        yield result
                        if time.monotonic() >= deadline:
                            return
                    if not created:
                        problems.append(f"{base}: stream ended before the watch was created")
                        continue
                    raise TemporaryError(f"etcd watch stream from {base} ended", delay=0.2)
            except httpx.ReadTimeout:
                return  # no event within the time asked for: a normal end
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                problems.append(f"{base}: unreachable ({exc})")
                continue
            except (httpx.HTTPError, ValueError) as exc:
                raise TemporaryError(f"etcd watch on {base} broke during {op}: {exc}", delay=0.2) from exc
        raise TemporaryError(f"no etcd member accepted the watch for {op}: {'; '.join(problems)}", delay=0.5)

    def close(self) -> None:
        self._client.close()
