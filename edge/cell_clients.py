"""The edge's clients to the cells (gRPC, or HTTP), async.

    CellClient (Protocol)        one region's cell
    ├── GrpcCellClient           shopnow.v1.Recommender over grpc.aio (the default; contracts.proto)
    └── HttpCellClient           the cell's HTTP API over httpx (same answer shape)

Both carry the user's home geography (`CellCall.geography`), so the cell does not compute it again.

Library errors are mapped here: a cell that fails or is slow raises `CellFailed` (a
TemporaryError, `kind` "timeout" or "error"); a cell refusing the input raises `CellRefused`
(an InputError: another region would refuse it too), and `CellNotFound` (a CellRefused) when it
does not know the product asked about (gRPC NOT_FOUND, HTTP 404): a client's mistake, not a cell
failure. Loopback only.
"""
from __future__ import annotations

from typing import Any, Protocol, Sequence

import grpc
import grpc.aio
import httpx

from contracts.cell_api import answer_from_pb, event_to_pb, surface_pb
from contracts.events import Event
from contracts.proto import recommend_pb2 as pb
from contracts.proto import recommend_pb2_grpc as pb_grpc
from edge.routing import CellCall
from regions.errors import InputError, ShopNowError, TemporaryError
from regions.topology import Region, Topology

_GRPC_OPTIONS = (("grpc.enable_http_proxy", 0),)
"""Loopback only: never let an HTTP(S)_PROXY variable route a cell call elsewhere."""
MAX_RECONNECT_BACKOFF_MS = 1000
"""gRPC's reconnect backoff grows to 120 s by default: a cell that came back would stay unreached
(and fail its re-admission probe, edge.ejection) for up to two minutes; here for at most a second."""


def grpc_options(connect_timeout_ms: float) -> tuple[tuple[str, int], ...]:
    """The channel's options: no proxy; give up on a connection attempt after `connect_timeout_ms`
    (gRPC's minimum connect timeout is its min reconnect backoff), retry it soon after."""
    ms = max(1, int(connect_timeout_ms))
    return _GRPC_OPTIONS + (("grpc.min_reconnect_backoff_ms", ms), ("grpc.initial_reconnect_backoff_ms", ms),
                            ("grpc.max_reconnect_backoff_ms", max(ms, MAX_RECONNECT_BACKOFF_MS)))


class CellFailed(TemporaryError):
    """A cell did not answer in time or answered with an error; another region may."""

    def __init__(self, region: str, *, kind: str, detail: str) -> None:
        super().__init__(f"cell {region}: {kind}: {detail}", delay=0.0)
        self.region = region
        self.kind = kind


class CellRefused(InputError):
    """A cell refused the request as invalid; every region would."""


class CellNotFound(CellRefused):
    """A cell does not know an id the request names (an unknown product); every region would say so.
    The edge passes it on as a 404 with the one error body (contracts.http_errors)."""

    http_status = 404


class CellClient(Protocol):
    region: str

    async def recommend(self, call: CellCall, *, timeout_s: float) -> dict[str, Any]:
        """The cell answer as a dict (docs/interfaces.md, "Cell answer")."""

    async def log_events(self, events: Sequence[Event], *, timeout_s: float) -> list[str]:
        """Stream entry ids of the events the cell stored (durably), in batch order."""

    async def close(self) -> None: ...


class GrpcCellClient:
    """One channel per cell, created in the running event loop on first use (grpc.aio's rule)."""

    def __init__(self, region: Region, *, host: str = "127.0.0.1", connect_timeout_ms: float = 100.0) -> None:
        self.region = region.name
        self._target = f"{host}:{region.grpc_port}"
        self._options = grpc_options(connect_timeout_ms)
        self._channel: grpc.aio.Channel | None = None
        self._stub: pb_grpc.RecommenderStub | None = None

    def _get_stub(self) -> pb_grpc.RecommenderStub:
        if self._stub is None:
            self._channel = grpc.aio.insecure_channel(self._target, options=self._options)
            self._stub = pb_grpc.RecommenderStub(self._channel)
        return self._stub

    def _failed(self, exc: grpc.aio.AioRpcError) -> ShopNowError:
        code = exc.code()
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            return CellRefused("request", f"cell {self.region} refused it: {exc.details()}")
        if code == grpc.StatusCode.NOT_FOUND:
            return CellNotFound("product_id", f"cell {self.region}: {exc.details()}")
        kind = "timeout" if code == grpc.StatusCode.DEADLINE_EXCEEDED else "error"
        return CellFailed(self.region, kind=kind, detail=f"{code.name}: {exc.details()}")

    async def recommend(self, call: CellCall, *, timeout_s: float) -> dict[str, Any]:
        request = pb.RecommendRequest(
            surface=surface_pb(call.surface), user_id=call.user_id, product_id=call.product_id,
            cart_items=list(call.cart_items), count=call.count, deadline_ms=call.deadline_ms,
            max_tier=call.max_tier, anonymous=call.anonymous, geography=call.geography)
        try:
            resp = await self._get_stub().Recommend(request, timeout=timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise self._failed(exc) from exc
        return answer_from_pb(resp)

    async def log_events(self, events: Sequence[Event], *, timeout_s: float) -> list[str]:
        try:
            ack = await self._get_stub().LogEvents(pb.EventBatch(events=[event_to_pb(e) for e in events]), timeout=timeout_s)
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

    def __init__(self, region: Region, *, host: str = "127.0.0.1", connect_timeout_ms: float = 100.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.region = region.name
        self._connect_s = connect_timeout_ms / 1000.0
        self._client = httpx.AsyncClient(base_url=f"http://{host}:{region.http_port}", trust_env=False,
                                         transport=transport)

    def _failed(self, exc: httpx.HTTPError) -> CellFailed:
        kind = "timeout" if isinstance(exc, httpx.TimeoutException) else "error"
        return CellFailed(self.region, kind=kind, detail=f"{type(exc).__name__}: {exc}")

    async def _send(self, method: str, url: str, *, timeout_s: float, **kwargs: Any) -> Any:
        try:
            resp = await self._client.request(method, url, timeout=httpx.Timeout(
                timeout_s, connect=min(timeout_s, self._connect_s)), **kwargs)
        except httpx.HTTPError as exc:
            raise self._failed(exc) from exc
        if resp.status_code == 404:
            raise CellNotFound("product_id", f"cell {self.region}: {resp.text[:300]}")
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
        if call.geography:
            params["geography"] = call.geography
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


def cell_clients(topology: Topology, *, transport: str = "grpc", connect_timeout_ms: float = 100.0) -> dict[str, CellClient]:
    """A client per region of the topology, on the region's host (loopback, or its namespace's address)."""
    if transport not in ("grpc", "http"):
        raise InputError("transport", f"{transport!r} is not a transport; use grpc or http")
    make = GrpcCellClient if transport == "grpc" else HttpCellClient
    return {name: make(region, host=topology.region_host(name), connect_timeout_ms=connect_timeout_ms)
            for name, region in sorted(topology.regions.items())}
