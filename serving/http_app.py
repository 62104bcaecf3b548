"""The cell's HTTP API (FastAPI).

    GET  /v1/recommendations/homepage?user_id=&count=      (max_tier=, anonymous=, X-Deadline-Ms)
    GET  /v1/recommendations/similar?product_id=&count=[&user_id=]   (user_id: the seen-items policy)
    GET  /v1/recommendations/cart?cart_items=a,b&count=[&user_id=]
    POST /v1/events            {"events": [...]}  -> 200 acknowledged (in the region's log) | 413 | 422 | 503
    GET  /v1/online-metrics?since_ts=&until_ts=&outcomes_until_ts=&by=bundle_version|arm&experiment=
                               per-variant totals of what this cell showed (no user ids)
    GET  /healthz              liveness
    GET  /readyz               bundle, Redis, freshness, error rate, p99, qps, tier mix, replication lag
    GET  /metrics              Prometheus
    POST/DELETE /admin/faults  chaos faults (bearer token with role chaos)

Bad input never crashes the cell: every InputError is a 422 naming the field (404 for an unknown
product, 413 for an oversized batch); anything unexpected is a 500 with a short message, and is
logged. The OpenAPI document (GET /openapi.json, contracts.openapi) lists every status each route
answers, the one error body, the request bodies with their bounds and the bearer scheme of
/admin/faults.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable, Literal

import anyio
import anyio.to_thread
import orjson
from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from contracts import openapi as oa
from contracts.cell_api import MAX_COUNT, MAX_DEADLINE_S, MAX_ID_LEN
from contracts.events_body import events_of_body
from contracts.http_errors import error_response as _error
from contracts.http_errors import install_error_handlers, readiness_response, unauthorized_response
from contracts.tiers import Tier
from fallback_tiers.deadline import DEADLINE_HEADER, deadline_seconds
from online_metrics.from_logs import MAX_TS
from regions.errors import InputError, TemporaryError
from serving.cell_runtime import CLEARED_FAULTS, HOMEPAGE_FAULT_STATUSES, MAX_FAULT_LATENCY_MS, CellRuntime
from serving.recommender import UnknownProduct

log = logging.getLogger(__name__)

ARRIVED_AT = "shopnow.arrived_at"
"""ASGI scope key: time.monotonic() when the request reached the app (serving.admission_gate)."""


class ArrivalMiddleware:
    """Pure ASGI middleware: stamps each HTTP request's arrival before FastAPI queues a sync route
    for the threadpool, so the admission gate counts that wait (serving.admission_gate)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope[ARRIVED_AT] = time.monotonic()
        await self.app(scope, receive, send)


_FAULT_STATUS = {404: "only while the chaos fault homepage_status=404 is injected", 500: oa.MEANING[500]}
_FAULTS_BODY = {
    "type": "object", "additionalProperties": False,
    "properties": {"ranking_latency_ms": {"type": "number", "minimum": 0, "maximum": MAX_FAULT_LATENCY_MS},
                   "freeze_index": {"type": "boolean"},
                   "homepage_status": {"type": "integer", "enum": list(HOMEPAGE_FAULT_STATUSES)},
                   "answer_latency_ms": {"oneOf": [
                       {"type": "number", "minimum": 0, "maximum": MAX_FAULT_LATENCY_MS},
                       {"type": "array", "minItems": 2, "maxItems": 2,
                        "items": {"type": "number", "minimum": 0, "maximum": MAX_FAULT_LATENCY_MS},
                        "description": "[low, high] with low <= high"}]}},
}
_FAULTS = {"type": "object", "required": ["ranking_latency_ms", "freeze_index", "homepage_status", "answer_latency_ms"],
           "properties": {**_FAULTS_BODY["properties"], "answer_latency_ms": {
               "type": "array", "minItems": 2, "maxItems": 2,
               "items": {"type": "number", "minimum": 0, "maximum": MAX_FAULT_LATENCY_MS}}}}


def _denied(status: int, message: str) -> JSONResponse:
    return unauthorized_response("authorization", message) if status == 401 else _error(status, "authorization", message)


def create_app(runtime: CellRuntime) -> FastAPI:
    app = FastAPI(title=f"ShopNow cell {runtime.region}", docs_url=None, redoc_url=None)
    app.add_middleware(ArrivalMiddleware)
    rec = runtime.recommender

    install_error_handlers(app)
    oa.install(app)

    @app.exception_handler(UnknownProduct)
    async def _unknown(_: Request, exc: UnknownProduct) -> JSONResponse:
        return _error(404, exc.field, exc.reason)

    @app.exception_handler(Exception)
    async def _crash(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return _error(500, "server", f"internal error ({type(exc).__name__}); the cell keeps running")

    def timed(surface: str, call: Callable[[], Any]) -> Response:
        started = time.perf_counter()
        try:
            answer = call()
        except InputError:
            raise
        except Exception:
            runtime.observe(surface=surface, tier="error", ok=False, latency_ms=(time.perf_counter() - started) * 1000)
            raise
        runtime.observe(surface=surface, tier=answer.tier, ok=True, latency_ms=answer.latency_ms, skipped=answer.skipped,
                        version=answer.bundle_version, experiment=answer.experiment)
        return Response(content=orjson.dumps(answer.to_dict()), media_type="application/json")

    slots = anyio.CapacityLimiter(runtime.settings.request_slots)  # bound to the event loop on first use

    async def computed(surface: str, call: Callable[[], Any]) -> Response:
        """`timed(surface, call)` on a worker thread, at most CellSettings.request_slots at once: a
        request waiting for a slot waits here, on the event loop, with no thread of its own."""
        delay = rec.faults.answer_delay_s()
        if delay:  # chaos fault: a slow host, before (and outside) the cell's own timing and its slots
            await asyncio.sleep(delay)
        return await anyio.to_thread.run_sync(timed, surface, call, limiter=slots)

    # The recommendation work runs on worker threads (`computed`), never on the event loop: a stalled
    # Redis costs each request up to the 50 ms socket timeout until the breaker opens, and on the event
    # loop those waits would queue behind one another (measured: 16 concurrent homepages at the
    # onset of a SIGSTOPped Redis took ~260-300 ms inline against ~120 ms on threads).
    @app.get("/v1/recommendations/homepage",
             responses={**oa.ok(oa.ref("Slate")), **oa.errors(422, 404, 500, why=_FAULT_STATUS)})
    async def homepage(
        request: Request, user_id: str | None = Query(default=None, max_length=MAX_ID_LEN), count: int = Query(8, ge=1, le=MAX_COUNT),
        max_tier: Tier = Query(Tier.FULL, description="the cheapest tier tried first"),
        anonymous: bool = False, deadline: str | None = Header(default=None, alias=DEADLINE_HEADER,
                                                               description="the request's budget in milliseconds"),
        geography: str = Query(default="", max_length=MAX_ID_LEN, description="home geography, as the edge computed it"),
    ) -> Response:
        if rec.faults.homepage_status:  # chaos fault: a broken release answering errors
            return _error(rec.faults.homepage_status, "homepage",
                          f"chaos fault homepage_status={rec.faults.homepage_status}: a broken release answering errors")
        tier = max_tier
        budget = deadline_seconds(deadline, default_s=rec.ladder_settings.deadline_s, max_s=MAX_DEADLINE_S)
        user = None if anonymous or not user_id else user_id
        return await computed("homepage", lambda: runtime.homepage(user_id=user, count=count, asked=tier, deadline_s=budget,
                                                          geography=geography if user else "",
                                                          arrived_at=request.scope.get(ARRIVED_AT)))

    @app.get("/v1/recommendations/similar", responses={**oa.ok(oa.ref("Slate")), **oa.errors(404, 422)})
    async def similar(product_id: str = Query(min_length=1, max_length=MAX_ID_LEN),
                count: int = Query(8, ge=1, le=MAX_COUNT),
                user_id: str | None = Query(default=None, max_length=MAX_ID_LEN,
                                            description="the viewer: the similar surface's seen-items policy applies"),
                anonymous: bool = False,
                geography: str = Query(default="", max_length=MAX_ID_LEN, description="home geography, as the edge computed it"),
                ) -> Response:
        user = None if anonymous or not user_id else user_id
        return await computed("similar", lambda: rec.similar(product_id=product_id, count=count, user_id=user,
                                                    geography=geography if user else ""))

    @app.get("/v1/recommendations/cart", responses={**oa.ok(oa.ref("Slate")), **oa.errors(404, 422)})
    async def cart(cart_items: str = Query(min_length=1, max_length=4096, description="comma-separated product ids"),
             count: int = Query(4, ge=1, le=MAX_COUNT),
             user_id: str | None = Query(default=None, max_length=MAX_ID_LEN,
                                         description="the shopper: the cart surface's seen-items policy applies"),
             anonymous: bool = False,
             geography: str = Query(default="", max_length=MAX_ID_LEN, description="home geography, as the edge computed it"),
             ) -> Response:
        items = [i for i in (p.strip() for p in cart_items.split(",")) if i]
        if not items:
            raise InputError("cart_items", "give at least one product id, comma-separated")
        user = None if anonymous or not user_id else user_id
        return await computed("cart", lambda: rec.cart(cart_items=items, count=count, user_id=user,
                                              geography=geography if user else ""))

    @app.post("/v1/events", openapi_extra=oa.json_body(oa.ref("EventsBatch")), responses={
        **oa.ok({"type": "object", "required": ["accepted", "stream_ids", "region"]},
                "acknowledged: durable in the region's log"),
        **oa.errors(413, 422, 503, why={503: "Redis is unavailable: not acknowledged; retry with the same event ids"})})
    async def events(request: Request) -> JSONResponse:
        raw = events_of_body(await request.body())
        try:
            # The append waits for Redis (an fsync'ed write, up to the log client's 1 s timeout): in the
            # threadpool, never on the event loop, which every other request needs to be read and answered
            # (inline, one Redis stall froze the whole cell: ~1 s with every answer late, measured in the
            # overload test at 140 req/s; docs/gamedays.md).
            ids = await run_in_threadpool(runtime.log_events, raw)
        except TemporaryError as exc:
            return _error(503, "events", f"not acknowledged: {exc}; retry with the same event ids")
        return JSONResponse({"accepted": len(ids), "stream_ids": ids, "region": runtime.region})

    @app.get("/v1/online-metrics", responses={
        **oa.ok({"type": "object", "required": ["region", "by", "totals", "impressions_read", "events_read"]},
                "per-variant totals of what this cell showed (counts and sums, no user id)"),
        **oa.errors(422, 503, why={503: "this region's Redis could not be read"})})
    def online_metrics(since_ts: float = Query(0.0, ge=0, le=MAX_TS, description="impressions recorded from (epoch s)"),
                       until_ts: float | None = Query(None, ge=0, le=MAX_TS, description="impressions recorded up to (epoch s)"),
                       outcomes_until_ts: float | None = Query(None, ge=0, le=MAX_TS, description="outcomes stored up to "
                                                                                                  "(epoch s; default until_ts + 30 min)"),
                       by: Literal["bundle_version", "arm"] = "bundle_version",
                       experiment: str | None = Query(default=None, max_length=MAX_ID_LEN)) -> JSONResponse:
        try:
            return JSONResponse(runtime.online_metrics(since_ts=since_ts, until_ts=until_ts, by=by, experiment=experiment,
                                                       outcomes_until_ts=outcomes_until_ts))
        except TemporaryError as exc:
            return _error(503, "online_metrics", f"could not read this region's logs: {exc}")

    @app.get("/healthz", responses=oa.ok({"type": "object", "required": ["alive", "region"]}))
    def healthz() -> dict[str, Any]:
        return {"alive": True, "region": runtime.region}

    @app.get("/readyz", responses={**oa.ok(), **oa.errors(503, why={503: "not ready (the readiness document "
                                                                          "with the error body naming why)"})})
    def readyz() -> JSONResponse:
        ready, body = runtime.readiness()
        return readiness_response(ready, body, why="the cell is not ready")

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> Response:
        runtime.flush_observed()
        body, content_type = runtime.metrics.render()
        return Response(content=body, media_type=content_type)

    @app.post("/admin/faults", openapi_extra=oa.json_body(_FAULTS_BODY),
              responses={**oa.ok(_FAULTS, "the faults now injected"), **oa.errors(401, 403, 422)})
    async def set_faults(request: Request, authorization: str | None = Depends(oa.authorization)) -> JSONResponse:
        denied = runtime.check_chaos_token(authorization)
        if denied:
            return _denied(*denied)
        try:
            body = await request.json()
        except ValueError:
            return _error(422, "body", "must be a JSON object")
        try:
            return JSONResponse(runtime.set_faults(body))
        except InputError as exc:
            return _error(422, exc.field, exc.reason)

    @app.delete("/admin/faults", responses={**oa.ok(_FAULTS, "every fault cleared"), **oa.errors(401, 403)})
    def clear_faults(authorization: str | None = Depends(oa.authorization)) -> JSONResponse:
        denied = runtime.check_chaos_token(authorization)
        if denied:
            return _denied(*denied)
        return JSONResponse(runtime.set_faults(dict(CLEARED_FAULTS)))

    return app
