"""The edge router: the front door of the local stack, with the same HTTP API as a cell.

    GET  /v1/recommendations/homepage?user_id=&count=      GET /healthz   (alive)
    GET  /v1/recommendations/similar?product_id=&count=    GET /readyz    (table version, first seen)
    GET  /v1/recommendations/cart?cart_items=&count=       GET /metrics   (own registry)
    POST /v1/events   {"events": [...]}

A read goes where `edge.routing.plan_request` says (home geography -> rendezvous on the user
id -> one retry in the geography -> one anonymous ask to another geography), each attempt with
its share of the remaining deadline; if nothing answers, the edge serves its own popularity list
(tier "edge-popularity", region "edge"): the homepage is never empty. A cell that refuses the
request (an unknown product: 404; invalid input: 422) is the client's mistake, which every region
would repeat: the edge passes it on at once, counts it in shopnow_edge_client_errors_total (not as
a cell failure) and never answers it from the last-resort list. The answer adds `edge_ms`,
`tried` (each attempt's region, role, result and ms), `outcome` (primary, retry, cross_geo or
last_resort: which attempt answered) and `routing_version`.

Every attempt's result also feeds the edge's passive outlier ejection (edge.ejection): a cell this
edge cannot reach is moved to the end of first-attempt orders for reads and events (its geography
peer gets the first try) until a single probe attempt finds it answering again; /readyz shows
`ejection`, /metrics shopnow_edge_ejected_cells and shopnow_edge_ejections_total.

Events are grouped by the user's geography (and chosen region) and sent only to regions of that
geography; when none of them stores a group, the answer is 503 and names what was stored and what
was not: the edge never acknowledges an event no region stored.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, replace
from typing import Any, AsyncIterator, Mapping

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from contracts import openapi as oa
from contracts.events import Event, parse_event
from contracts.events_body import events_of_body
from contracts.http_errors import error_body, install_error_handlers, readiness_response
from edge.cell_clients import CellClient, CellFailed, CellNotFound, CellRefused, cell_clients
from edge.fast_reads import FastReads
from edge.last_resort import LastResort, last_resort_answer
from edge.openapi_doc import read_paths
from edge.routing import attempt_budget_ms, cell_call, plan_events, plan_request
from edge.ejection import Ejector
from edge.settings import EdgeSettings, ejection_policy
from edge.table_watcher import TableWatcher, WatchState
from failover.control_store import ControlStore
from regions.errors import InputError
from regions.geo import home_geography_of
from regions.topology import Topology

log = logging.getLogger("shopnow.edge")

@dataclass(frozen=True)
class EdgeMetrics:
    requests: Counter
    attempts: Counter
    retries: Counter
    cross_geo: Counter
    last_resort: Counter
    events: Counter
    client_errors: Counter
    table_version: Gauge
    latency: Histogram
    ejected: Gauge
    ejections: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> EdgeMetrics:
        p = "shopnow_edge"
        return cls(
            requests=Counter(f"{p}_requests_total", "Reads answered, by surface, home geography, serving region, tier "
                             "and outcome (primary, retry, cross_geo, last_resort).",
                             ["surface", "geo", "region", "tier", "outcome"], registry=registry),
            attempts=Counter(f"{p}_cell_attempts_total", "Calls to cells, by region and result (ok, timeout, error, "
                             "empty, refused).", ["region", "result"], registry=registry),
            retries=Counter(f"{p}_retries_total", "Reads retried on another region of the same geography.", ["geo"],
                            registry=registry),
            cross_geo=Counter(f"{p}_cross_geo_anonymous_total", "Reads answered anonymously by another geography.",
                              ["geo", "region"], registry=registry),
            last_resort=Counter(f"{p}_last_resort_total", "Reads answered by the edge's own popularity list.",
                                ["surface"], registry=registry),
            events=Counter(f"{p}_events_total", "Events by home geography and outcome (stored, not_stored).",
                           ["geo", "outcome"], registry=registry),
            client_errors=Counter(f"{p}_client_errors_total", "Reads refused because of the request (not_found: "
                                  "unknown product; invalid), passed on to the client; not cell failures.",
                                  ["surface", "reason"], registry=registry),
            table_version=Gauge(f"{p}_routing_table_version", "Version of the routing table in use (0: default).",
                                registry=registry),
            latency=Histogram(f"{p}_request_seconds", "Edge time per read.", ["surface"], registry=registry,
                              buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.18, 0.25, 0.5, 1.0)),
            ejected=Gauge(f"{p}_ejected_cells", "Cells this edge has ejected from first attempts (edge.ejection), "
                          "probing ones included.", registry=registry),
            ejections=Counter(f"{p}_ejections_total", "Passive outlier ejection events by cell and event (ejected, "
                              "re-ejected: its probe failed, readmitted).", ["region", "event"], registry=registry),
        )


class Edge:
    """The routing engine behind the HTTP routes; usable without HTTP (the benchmark, tests)."""

    def __init__(self, *, topology: Topology, clients: Mapping[str, CellClient], watcher: TableWatcher,
                 last_resort: LastResort, settings: EdgeSettings, registry: CollectorRegistry) -> None:
        self.topology, self.clients, self.watcher = topology, clients, watcher
        self.last_resort, self.settings, self.registry = last_resort, settings, registry
        self.metrics = EdgeMetrics.create(registry)
        self.ejector = Ejector({g: tuple(r.name for r in topology.regions_in(g)) for g in topology.geographies},
                               ejection_policy(settings), on_event=self._ejection_event)

    def _ejection_event(self, region: str, event: str) -> None:
        self.metrics.ejections.labels(region=region, event=event).inc()
        self.metrics.ejected.set(len(self.ejector.ejected()))
        (log.info if event == "readmitted" else log.warning)("cell %s %s by this edge (%s)", region, event,
                                                              self.ejector.status()["ejected"].get(region, "admitted"))

    async def recommend(self, *, surface: str, user_id: str | None, count: int, budget_ms: float,
                        product_id: str = "", cart_items: tuple[str, ...] = ()) -> dict[str, Any]:
        start = time.perf_counter()
        state = self.watcher.state
        key = user_id or product_id or ",".join(cart_items)
        geo = home_geography_of(key, self.topology)
        plan = plan_request(state.table, self.topology, key=key, home_geography=geo, personal=bool(user_id),
                            settings=self.settings, demoted=self.ejector.demoted())
        tried: list[dict[str, Any]] = []
        answer: dict[str, Any] | None = None
        for n, attempt in enumerate(plan.attempts):
            elapsed = (time.perf_counter() - start) * 1000.0
            budget = attempt_budget_ms(budget_ms - elapsed, attempts_left=len(plan.attempts) - n, settings=self.settings)
            if budget <= 0:
                break
            call = cell_call(attempt, surface=surface, user_id=user_id, product_id=product_id, cart_items=cart_items,
                             count=count, budget_ms=budget, settings=self.settings, home_geography=geo)
            t0 = time.perf_counter()
            self.ejector.started(attempt.region)
            try:
                got = await self.clients[attempt.region].recommend(call, timeout_s=budget / 1000.0)
                result = "ok" if got.get("items") else "empty"
            except CellFailed as exc:
                result, got = exc.kind, None
            except CellRefused as exc:
                reason = "not_found" if isinstance(exc, CellNotFound) else "invalid"
                self.ejector.finished(attempt.region, failed=False)
                self.metrics.attempts.labels(region=attempt.region, result="refused").inc()
                self.metrics.client_errors.labels(surface=surface, reason=reason).inc()
                raise
            self.ejector.finished(attempt.region, failed=got is None)
            self.metrics.attempts.labels(region=attempt.region, result=result).inc()
            tried.append({"region": attempt.region, "role": attempt.role, "anonymous": call.anonymous,
                          "max_tier": attempt.max_tier or "full", "result": result,
                          "ms": round((time.perf_counter() - t0) * 1000.0, 3)})
            if attempt.role == "retry":
                self.metrics.retries.labels(geo=geo).inc()
            if result == "ok":
                answer = got
                break
        if answer is None:
            answer = last_resort_answer(self.last_resort, count=count)
            outcome = "last_resort"
            self.metrics.last_resort.labels(surface=surface).inc()
        else:
            outcome = tried[-1]["role"].replace("-", "_")
            if outcome == "cross_geo":
                self.metrics.cross_geo.labels(geo=geo, region=tried[-1]["region"]).inc()
        self.metrics.requests.labels(surface=surface, geo=geo, region=answer.get("region", "?"),
                                     tier=answer.get("tier", "?"), outcome=outcome).inc()
        edge_s = time.perf_counter() - start
        self.metrics.latency.labels(surface=surface).observe(edge_s)
        return {**answer, "edge_ms": round(edge_s * 1000.0, 3), "tried": tried, "outcome": outcome,
                "routing_version": state.table.version}

    async def _store_group(self, regions: tuple[str, ...], events: list[Event], *,
                           deadline: float) -> tuple[str, list[str], list[str], bool]:
        """(region that stored, stream ids, problems, refused); region "" when none stored them. Each
        region but the last gets `events_first_attempt_share` of what is left (attempt_budget_ms, as
        reads do), so that a region that never answers (a network cut) leaves time to store in the
        next one; the batch is idempotent by event id, so storing it again there is safe."""
        problems = []
        for n, region in enumerate(regions):
            left_ms = (deadline - time.perf_counter()) * 1000.0
            budget_ms = attempt_budget_ms(left_ms, attempts_left=len(regions) - n, settings=self.settings,
                                          share=self.settings.events_first_attempt_share)
            if budget_ms <= 1.0:
                problems.append(f"{region}: no time left")
                break
            self.ejector.started(region)
            try:
                ids = await self.clients[region].log_events(events, timeout_s=budget_ms / 1000.0)
            except CellFailed as exc:
                # only a timeout says the cell may be unreachable: a fast error is the cell answering
                # that it could not store the batch (its Redis is down), and its reads still work
                self.ejector.finished(region, failed=exc.kind == "timeout")
                problems.append(str(exc))
                continue
            except CellRefused as exc:  # invalid for every region: do not try the next one
                self.ejector.finished(region, failed=False)
                return "", [], problems + [str(exc)], True
            self.ejector.finished(region, failed=False)
            return region, ids, problems, False
        return "", [], problems, False

    async def log_events(self, raw_events: list[Any], *, now: float) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body). Validates every event first (422 names the event and field)."""
        start = time.perf_counter()
        if not raw_events:
            raise InputError("events", "must hold at least one event")
        state = self.watcher.state
        demoted = self.ejector.demoted(probe=False)
        groups: dict[tuple[str, tuple[str, ...]], list[Event]] = {}
        for i, raw in enumerate(raw_events):
            try:
                event = parse_event(raw, now=now, geo="")
                geo = home_geography_of(event.user_id, self.topology)
                event = replace(event, geo=geo)
            except InputError as exc:
                raise InputError(f"events[{i}].{exc.field}", exc.reason) from exc
            regions = plan_events(state.table, self.topology, key=event.user_id, home_geography=geo, demoted=demoted)
            groups.setdefault((geo, regions), []).append(event)
        deadline = start + self.settings.events_deadline_ms / 1000.0
        results = await asyncio.gather(*(self._store_group(regions, evs, deadline=deadline)
                                         for (_, regions), evs in groups.items()))
        stored: dict[str, list[str]] = {}
        not_stored: list[str] = []
        problems: list[str] = []
        stream_ids: dict[str, str] = {}
        refused_only = True
        for ((geo, _), evs), (region, ids, why, refused) in zip(groups.items(), results):
            problems += why
            refused_only = refused_only and (refused or bool(region))
            ok = bool(region)
            self.metrics.events.labels(geo=geo, outcome="stored" if ok else "not_stored").inc(len(evs))
            if ok:
                stored.setdefault(region, []).extend(e.event_id for e in evs)
                stream_ids.update(zip((e.event_id for e in evs), ids))
            else:
                not_stored += [e.event_id for e in evs]
        edge_ms = round((time.perf_counter() - start) * 1000.0, 3)
        body = {"accepted": sum(len(v) for v in stored.values()), "stored": stored, "stream_ids": stream_ids,
                "edge_ms": edge_ms}
        if not_stored:
            why = ("a cell refused them as invalid; fix the events" if refused_only else
                   "no region of the users' home geography stored them; retry later with the same event ids")
            body |= {"not_stored": not_stored,
                     **error_body("events", f"{len(not_stored)} events not stored: {why} (" + "; ".join(problems) + ")")}
            return (422 if refused_only else 503), body
        return 200, body

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        state: WatchState = self.watcher.state
        ready = state.polls > 0 and self.watcher.alive() and bool(self.last_resort.items)
        return ready, {"ready": ready, "table_version": state.table.version, "table_source": state.source,
                       "table_first_seen_at": state.first_seen_at, "table_updated_at": state.table.updated_at,
                       "fail_static": state.table.fail_static, "table_error": state.error, "polls": state.polls,
                       "table_follow": state.follow, "ejection": self.ejector.status(),
                       "last_resort": {"source": self.last_resort.source, "items": len(self.last_resort.items),
                                       "note": self.last_resort.note}}


def create_app(*, topology: Topology, store: ControlStore | None, last_resort: LastResort,
               settings: EdgeSettings = EdgeSettings(), clients: Mapping[str, CellClient] | None = None) -> FastAPI:
    """The edge's FastAPI app; the table watcher and the cell channels live as long as the app."""
    registry = CollectorRegistry()
    watcher = TableWatcher(store, topology, interval_s=settings.poll_interval_s)
    edge = Edge(topology=topology, clients=clients or cell_clients(topology, transport=settings.transport,
                                                                    connect_timeout_ms=settings.connect_timeout_ms), watcher=watcher,
                last_resort=last_resort, settings=settings, registry=registry)
    default_ms = topology.settings.request_deadline_ms

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        watcher.start()
        try:
            yield
        finally:
            watcher.stop()
            for client in edge.clients.values():
                await client.close()

    # The read routes are served by edge.fast_reads, outside FastAPI's routing: their OpenAPI paths
    # come from edge.openapi_doc and are merged into the generated document (GET /openapi.json).
    app = FastAPI(title="ShopNow edge router", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.edge = edge

    install_error_handlers(app)
    oa.install(app, paths=read_paths(default_count=settings.default_count, max_count=settings.max_count))

    # The read routes (homepage, similar, cart) are served by the lean ASGI layer edge.fast_reads.
    app.add_middleware(FastReads, edge=edge, default_ms=default_ms)

    @app.post("/v1/events", openapi_extra=oa.json_body(oa.ref("EventsBatch")), responses={
        **oa.ok({"type": "object", "required": ["accepted", "stored", "stream_ids", "edge_ms"]},
                "every event stored by a region of its user's geography"),
        **oa.errors(413, 422, 503, why={
            422: "an event is invalid (the field names it: events[i].<field>); nothing stored",
            503: "some events not stored (not_stored lists them, stored what was): retry them with the same ids"})})
    async def events(request: Request) -> JSONResponse:
        status, answer = await edge.log_events(events_of_body(await request.body()), now=time.time())
        return JSONResponse(status_code=status, content=answer)

    @app.get("/healthz", responses=oa.ok({"type": "object", "required": ["status"]}))
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", responses={**oa.ok(), **oa.errors(503, why={503: "not ready: no routing table poll yet, "
                                                                          "watcher stopped or no last-resort list"})})
    async def readyz() -> JSONResponse:
        ready, body = edge.readiness()
        why = [w for w, bad in (("no routing table poll yet", not body["polls"]),
                                ("no last-resort list", not body["last_resort"]["items"])) if bad]
        return readiness_response(ready, body, why="not ready: " + ("; ".join(why) or "the table watcher stopped"))

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics() -> Response:
        edge.metrics.table_version.set(watcher.state.table.version)
        edge.metrics.ejected.set(len(edge.ejector.ejected()))
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app
