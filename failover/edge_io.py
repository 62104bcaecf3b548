"""The edge's I/O adapters: clients to the cells (gRPC, or HTTP), the routing-table watcher, and
the last-resort popularity list.

    CellClient (Protocol)        one region's cell, async
    ├── GrpcCellClient           shopnow.v1.Recommender over grpc.aio (the default)
    └── HttpCellClient           the cell's HTTP API over httpx (same answer shape)
    TableWatcher                 a thread following `routing/table` in the control store (watch, else poll)
    load_last_resort(...)        the newest bundle's popularity.json, else the packaged list

Library errors are mapped here: a cell that fails or is slow raises `CellFailed` (a
TemporaryError, `kind` "timeout" or "error"); a cell refusing the input raises `CellRefused`
(an InputError: another region would refuse it too). Loopback only.
"""
from __future__ import annotations

import json
import logging
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import grpc
import grpc.aio
import httpx

from failover.control_store import ControlStore
from failover.key_watch import POLL, WATCH_TIMEOUT_S, FollowingThread, log_mode_change, wait_for_change
from failover.routing import TABLE_KEY, CellCall, RoutingTable, default_table, parse_table
from regions.errors import InputError, ShopNowError, TemporaryError
from regions.topology import Region, Topology
from replication.events import Event
from serving.proto import recommend_pb2 as pb
from serving.proto import recommend_pb2_grpc as pb_grpc

log = logging.getLogger("shopnow.edge")

PACKAGED_LAST_RESORT = Path(__file__).with_name("last_resort_popularity.json")
"""Shipped with the package: the top items of the demo marketplace (seed 7), so that the homepage
is never empty even when no artifact store can be read at start."""
_SURFACES = {"homepage": pb.HOMEPAGE, "similar": pb.SIMILAR, "cart": pb.CART}
_GRPC_OPTIONS = (("grpc.enable_http_proxy", 0),)
"""Loopback only: never let an HTTP(S)_PROXY variable route a cell call elsewhere."""


class CellFailed(TemporaryError):
    """A cell did not answer in time or answered with an error; another region may."""

    def __init__(self, region: str, *, kind: str, detail: str) -> None:
        super().__init__(f"cell {region}: {kind}: {detail}", delay=0.0)
        self.region = region
        self.kind = kind


class CellRefused(InputError):
    """A cell refused the request as invalid; every region would."""


class CellClient(Protocol):
    region: str

    async def recommend(self, call: CellCall, *, timeout_s: float) -> dict[str, Any]:
        """The cell answer as a dict (docs/interfaces.md, "Cell answer")."""

    async def log_events(self, events: Sequence[Event], *, timeout_s: float) -> list[str]:
        """Stream entry ids of the events the cell stored (durably), in batch order."""

    async def close(self) -> None: ...


def answer_from_pb(resp: pb.RecommendResponse) -> dict[str, Any]:
    return {
        "items": [{"item_id": i.item_id, "score": i.score} for i in resp.items], "tier": resp.tier,
        "region": resp.region, "bundle_version": resp.bundle_version,
        "skipped": [{"tier": s.tier, "reason": s.reason} for s in resp.skipped], "stale": resp.stale,
        "latency_ms": resp.latency_ms,
    }


def _event_pb(e: Event) -> pb.Event:
    fields: dict[str, Any] = {"event_id": e.event_id, "user_id": e.user_id, "item_id": e.item_id, "type": e.type,
                              "ts": e.ts, "session_id": e.session_id, "price": e.price}
    if e.seq >= 0:
        fields["seq"] = e.seq
    return pb.Event(**fields)


class GrpcCellClient:
    """One channel per cell, created in the running event loop on first use (grpc.aio's rule)."""

    def __init__(self, region: Region, *, host: str = "127.0.0.1") -> None:
        self.region = region.name
        self._target = f"{host}:{region.grpc_port}"
        self._channel: grpc.aio.Channel | None = None
        self._stub: pb_grpc.RecommenderStub | None = None

    def _get_stub(self) -> pb_grpc.RecommenderStub:
        if self._stub is None:
            self._channel = grpc.aio.insecure_channel(self._target, options=_GRPC_OPTIONS)
            self._stub = pb_grpc.RecommenderStub(self._channel)
        return self._stub

    def _failed(self, exc: grpc.aio.AioRpcError) -> ShopNowError:
        code = exc.code()
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            return CellRefused("request", f"cell {self.region} refused it: {exc.details()}")
        kind = "timeout" if code == grpc.StatusCode.DEADLINE_EXCEEDED else "error"
        return CellFailed(self.region, kind=kind, detail=f"{code.name}: {exc.details()}")

    async def recommend(self, call: CellCall, *, timeout_s: float) -> dict[str, Any]:
        request = pb.RecommendRequest(
            surface=_SURFACES[call.surface], user_id=call.user_id, product_id=call.product_id,
            cart_items=list(call.cart_items), count=call.count, deadline_ms=call.deadline_ms,
            max_tier=call.max_tier, anonymous=call.anonymous)
        try:
            resp = await self._get_stub().Recommend(request, timeout=timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise self._failed(exc) from exc
        return answer_from_pb(resp)

    async def log_events(self, events: Sequence[Event], *, timeout_s: float) -> list[str]:
        try:
            ack = await self._get_stub().LogEvents(pb.EventBatch(events=[_event_pb(e) for e in events]), timeout=timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise self._failed(exc) from exc
        if ack.accepted != len(events):
            raise CellFailed(self.region, kind="error", detail=f"stored {ack.accepted} of {len(events)} events")
        return list(ack.stream_ids)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = self._stub = None


class HttpCellClient:
    """The cell's HTTP API: GET /v1/recommendations/<surface> with `max_tier`, `anonymous` and the
    X-Deadline-Ms header; POST /v1/events. Used where gRPC is not wanted (REGIONCTL_EDGE_TRANSPORT)."""

    def __init__(self, region: Region, *, host: str = "127.0.0.1",
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.region = region.name
        self._client = httpx.AsyncClient(base_url=f"http://{host}:{region.http_port}", trust_env=False,
                                         transport=transport)

    def _failed(self, exc: httpx.HTTPError) -> CellFailed:
        kind = "timeout" if isinstance(exc, httpx.TimeoutException) else "error"
        return CellFailed(self.region, kind=kind, detail=f"{type(exc).__name__}: {exc}")

    async def _send(self, method: str, url: str, *, timeout_s: float, **kwargs: Any) -> Any:
        try:
            resp = await self._client.request(method, url, timeout=timeout_s, **kwargs)
        except httpx.HTTPError as exc:
            raise self._failed(exc) from exc
        if resp.status_code in (400, 413, 422):
            raise CellRefused("request", f"cell {self.region} refused it ({resp.status_code}): {resp.text[:300]}")
        if resp.status_code != 200:
            raise CellFailed(self.region, kind="error", detail=f"HTTP {resp.status_code}: {resp.text[:300]}")
        try:
            return resp.json()
        except ValueError as exc:
            raise CellFailed(self.region, kind="error", detail="answer is not JSON") from exc

    async def recommend(self, call: CellCall, *, timeout_s: float) -> dict[str, Any]:
        params: dict[str, Any] = {"count": call.count}
        if call.user_id:
            params["user_id"] = call.user_id
        if call.product_id:
            params["product_id"] = call.product_id
        if call.cart_items:
            params["cart_items"] = ",".join(call.cart_items)
        if call.max_tier:
            params["max_tier"] = call.max_tier
        if call.anonymous:
            params["anonymous"] = "true"
        answer = await self._send("GET", f"/v1/recommendations/{call.surface}", timeout_s=timeout_s, params=params,
                                  headers={"X-Deadline-Ms": f"{call.deadline_ms:.1f}"})
        if not isinstance(answer, dict) or not isinstance(answer.get("items"), list):
            raise CellFailed(self.region, kind="error", detail="answer has no items list")
        return answer

    async def log_events(self, events: Sequence[Event], *, timeout_s: float) -> list[str]:
        body = {"events": [{k: v for k, v in vars(e).items() if k != "geo"} for e in events]}
        ack = await self._send("POST", "/v1/events", timeout_s=timeout_s, json=body)
        if not isinstance(ack, dict) or ack.get("accepted") != len(events):
            raise CellFailed(self.region, kind="error", detail=f"stored {ack.get('accepted') if isinstance(ack, dict) else '?'} "
                                                   f"of {len(events)} events")
        return [str(s) for s in ack.get("stream_ids", [])]

    async def close(self) -> None:
        await self._client.aclose()


def cell_clients(topology: Topology, *, transport: str = "grpc") -> dict[str, CellClient]:
    """A client per region of the topology, on the topology's loopback host."""
    if transport not in ("grpc", "http"):
        raise InputError("transport", f"{transport!r} is not a transport; use grpc or http")
    make = GrpcCellClient if transport == "grpc" else HttpCellClient
    return {name: make(region, host=topology.settings.host) for name, region in sorted(topology.regions.items())}


# -- the routing table, watched ---------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class WatchState:
    """What the edge routes by now, and since when (wall clock, for the steering-time measurement)."""

    table: RoutingTable
    source: str
    """"store" (read from the control store) or "default" (none there yet, or none given)."""
    first_seen_at: float | None
    """When this edge first saw this table version; None for the default table."""
    store_version: int = 0
    polls: int = 0
    error: str = ""
    """The last problem reading or parsing the table ("" when the last poll was fine)."""
    follow: str = POLL
    """How the watcher waits for the next table: "watch" (the store's watch, etcd) or "poll"
    (every interval_s: a store without a watch, or while the watch is broken)."""


class TableWatcher(FollowingThread):
    """Reads `routing/table` in a daemon thread after each change (failover.key_watch: the store's
    watch where it has one, else every `interval_s`); `state` is swapped atomically.

    A malformed table or an unreachable store keeps the last good table (fail-static at the edge).
    """

    def __init__(self, store: ControlStore | None, topology: Topology, *, interval_s: float,
                 clock: Callable[[], float] = time.time,
                 on_change: Callable[[WatchState], None] | None = None,
                 watch_timeout_s: float = WATCH_TIMEOUT_S) -> None:
        self._store, self._topology, self._interval = store, topology, interval_s
        self._clock, self._on_change = clock, on_change
        self._watch_timeout = watch_timeout_s
        self._read_version = 0
        """The version last read, parsed or not: the watch waits for the next one."""
        self.state = WatchState(table=default_table(topology), source="default", first_seen_at=None)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._thread_name = "routing-table-watcher"

    def poll_once(self) -> WatchState:
        state = self.state
        if self._store is None:
            self.state = state = replace(state, polls=state.polls + 1)
            return state
        try:
            found = self._store.get(TABLE_KEY)
            self._read_version = found.version if found else 0
            if found is None or found.version == state.store_version:
                new = replace(state, polls=state.polls + 1, error="")
            else:
                table = parse_table(found.value, self._topology)
                new = WatchState(table=table, source="store", first_seen_at=self._clock(),
                                 store_version=found.version, polls=state.polls + 1, follow=state.follow)
        except ShopNowError as exc:
            log.warning("routing table not updated, keeping version %s: %s", state.table.version, exc)
            new = replace(state, polls=state.polls + 1, error=str(exc))
        self.state = new
        if new.table is not state.table and self._on_change is not None:
            self._on_change(new)
        return new

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:  # a bug must not stop the watcher: log it and keep the last table
                log.exception("routing table watcher failed; keeping the last table")
            follow, why = wait_for_change(self._store, TABLE_KEY, after_version=self._read_version,
                                          watch_timeout_s=self._watch_timeout, poll_interval_s=self._interval,
                                          stop=self._stop)
            log_mode_change(TABLE_KEY, self.state.follow, follow, why)
            if follow != self.state.follow:
                self.state = replace(self.state, follow=follow)


# -- the last resort --------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class LastResort:
    items: tuple[str, ...]
    source: str
    """Where the list came from: "bundle <version>", a file path, or "packaged"."""
    note: str = ""
    """Why a preferred source was not used ("" when it was)."""


def _read_list(path: Path) -> tuple[str, ...]:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError("last_resort", f"cannot read a JSON list of item ids from {path}: {exc}") from exc
    if not isinstance(raw, list) or not raw or not all(isinstance(i, str) and i for i in raw):
        raise InputError("last_resort", f"{path} must hold a non-empty JSON list of item id strings")
    return tuple(dict.fromkeys(raw))


def load_last_resort(*, artifacts_url: str | None = None, path: Path | None = None,
                     s3_endpoint: str | None = None) -> LastResort:
    """The newest bundle's popularity.json (current pointer, else newest published, checksums
    verified), else the list at `path`, else the packaged list. Never raises for a missing store."""
    notes = []
    if artifacts_url:
        from replication.artifact_store import store_from_url
        from replication.verifying import verify_integrity

        try:
            store = store_from_url(artifacts_url, endpoint_url=s3_endpoint)
            version = store.current() or max(store.list(), key=lambda b: (b.created_at, b.version)).version
            with tempfile.TemporaryDirectory(prefix="edge-bundle-") as tmp:
                bundle = store.fetch(version, Path(tmp) / version)
                verify_integrity(bundle)
                return LastResort(items=_read_list(bundle / "popularity.json"), source=f"bundle {version}")
        except (ShopNowError, ValueError, OSError) as exc:  # ValueError: max() of an empty store
            notes.append(f"artifact store {artifacts_url}: {exc}")
    if path is not None:
        try:
            return LastResort(items=_read_list(path), source=str(path), note="; ".join(notes))
        except InputError as exc:
            notes.append(str(exc))
    return LastResort(items=_read_list(PACKAGED_LAST_RESORT), source="packaged", note="; ".join(notes))


def last_resort_answer(last: LastResort, *, count: int) -> dict[str, Any]:
    """The edge's own answer: never empty, says tier "edge-popularity" and region "edge"."""
    return {"items": [{"item_id": i, "score": round(1.0 / (1 + n), 6)} for n, i in enumerate(last.items[:count])],
            "tier": "edge-popularity", "region": "edge", "bundle_version": last.source, "skipped": [],
            "stale": False, "latency_ms": 0.0}
