"""The control API of a controller process (FastAPI, 127.0.0.1 only), its client, and `serve`.

    GET    /v1/status                      viewer+   regions, state, weights, tier mix, lag, bundles, leader,
                                                     drains (actor, expiry), failback stages, running drills
    POST   /v1/regions/{r}/drain           director  {reason, force, ttl}
    POST   /v1/regions/{r}/undrain         director  {reason}
    POST   /v1/steer                       director  {geography, weights{region:int}, ttl, reason}
    DELETE /v1/steer/{geo}?reason=         director
    POST   /v1/drills                      director          {region, dry_run, hold, reason} -> plan | drill id
    GET    /v1/drills/{id}                 viewer+
    GET    /v1/journal?limit=              viewer+
    GET    /metrics, /healthz, /readyz     no token (failover.controller_metrics: round, decision, store
                                           reachable / writing, leader, Route 53 publishing)
    GET    /ui                             the live dashboard (failover.dashboard; its calls carry the token)
    GET    /v1/gamedays[/{name}/report.png] viewer+  game-day reports and their plots

Answers: 401 without or with an unknown token; 403 for a role without the permission; 422 with
{"error": {"field", "message"}} for bad input (nothing changes); 409 when a drill cannot start;
503 on a standby for every change, naming the leader and its API URL. TTLs and holds are seconds
or durations such as 30s, 10m, 1h, 24h (`parse_duration`).
"""
from __future__ import annotations

import re
import signal
import threading
import time
from pathlib import Path
from typing import Annotated, Any, Callable, Mapping, Optional

import httpx
from fastapi import Depends, FastAPI, Path as PathParam, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from contracts import openapi as oa
from contracts.http_errors import error_response as _error
from contracts.http_errors import install_error_handlers, unauthorized_response
from contracts.limits import MAX_ID_LEN, MAX_REASON_LEN
from failover import controller_metrics, dashboard, status_view
from failover.auth import Forbidden, Permission, Principal, TokenBook, Unauthorized
from failover.controller import Controller
from failover.effects import health_document
from failover.drill_report import plan_document
from failover.drill_runner import DrillConflict, DrillRunner
from failover.journal import Action
from failover.leadership import NotLeader
from failover.safety import clear_steer, request_drain, request_steer, request_undrain
from regions.errors import InputError, PermanentError, ShopNowError, TemporaryError
from regions.processes import wait_until
from replication.user_erasure import erase_user

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = r"\s*(-?\d+(?:\.\d+)?)\s*([smhd]?)\s*"
Duration = Annotated[Any, WithJsonSchema({"anyOf": [
    {"type": "number", "exclusiveMinimum": 0}, {"type": "string", "pattern": f"^{_DURATION}$"}, {"type": "null"}],
    "description": "seconds, or a duration such as 30s, 10m, 1h, 24h"})]
"""Seconds, or a duration such as 30s, 10m, 1h, 24h: checked by parse_duration (422 naming the field)."""
Reason = Annotated[str, Field(max_length=MAX_REASON_LEN, description="why: journaled with the change")]
Name = Annotated[str, Field(min_length=1, max_length=MAX_ID_LEN)]


def parse_duration(value: float | int | str | None, *, field: str = "ttl") -> float | None:
    """Seconds from 90, "90", "30s", "10m", "1h", "24h" or "1.5d"; None stays None."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise InputError(field, f"must be seconds or a duration such as 30s, 10m, 1h, 24h; got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = re.fullmatch(_DURATION, str(value))
        if not match:
            raise InputError(field, f"{value!r} is not a duration; use seconds or a number with s, m, h or d "
                                    "(30s, 10m, 1h, 24h)")
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if seconds != seconds or seconds <= 0:  # NaN or not positive
        raise InputError(field, f"must be a positive duration such as 30s, 10m, 1h; got {value!r}")
    return seconds


class _Body(BaseModel):
    """Request bodies are read strictly: "true" is not a boolean, "5" is not a weight."""
    model_config = ConfigDict(strict=True)


class DrainBody(_Body):
    reason: Reason = ""
    force: bool = False
    ttl: Duration = None


class UndrainBody(_Body):
    reason: Reason = ""


class DeleteUserBody(_Body):
    reason: Reason = ""


class SteerBody(_Body):
    geography: Name
    weights: dict[Name, Annotated[int, Field(ge=0, le=100)]] = Field(
        min_length=1, max_length=64, description="region -> percent of the geography's traffic (summing to 100)")
    ttl: Duration = None
    reason: Reason = ""


class DrillBody(_Body):
    region: Name
    dry_run: bool = False
    hold: Duration = None
    reason: Reason = ""


_PATH_ID = Annotated[str, PathParam(min_length=1, max_length=MAX_ID_LEN)]
"""A region, geography, user or drill id in a path."""
_CHANGE = oa.errors(401, 403, 422, 503, why={503: "a standby (the body names the leader and its API) or the "
                                                  "control store is unreachable (Retry-After)"})
_NOT_JSON = oa.errors(400, why={400: "the body is not JSON"})
_CHANGED = oa.ok({"type": "object", "required": ["ok", "overrides"]}, "the overrides now in force")
_READ = oa.errors(401)


def status_document(controller: Controller) -> dict[str, Any]:
    """What GET /v1/status answers: this process's view plus the store's table and the leader."""
    last = controller.last
    try:
        table, leader = controller.read_table(), controller.leader_info()
    except TemporaryError as exc:  # the store is down: answer with what this process last saw
        table = controller.followed_table()
        leader = {"holder": None, "term": None, "api_url": None, "self": controller.holder,
                  "is_self": controller.leadership.is_leader, "error": str(exc)}
    regions: dict[str, Any] = {}
    lags: list[dict[str, Any]] = []
    for name in sorted(controller.topology.regions):
        h = last.health.get(name) if last else None
        report = last.reports.get(name) if last else None
        ready = report.readyz if report else None
        document = health_document(h, controller.settings) if h else {"region": name, "state": "unknown"}
        if h and last:  # whether the ejection costs the region its traffic is steering's call
            document["outlier"]["traffic_removed"] = last.snapshot.ejected(name)
        regions[name] = {**document,
                         "geography": controller.topology.regions[name].geography,
                         "bundle_version": h.last_probe.bundle_version if h and h.last_probe else None,
                         "qps": ready.qps if ready else None,
                         "tier_mix": dict(ready.tier_mix) if ready else {}}
        for lag in ready.replication if ready else ():
            lags.append({"reported_by": name, "source": lag.source, "destination": lag.destination,
                         "lag_s": lag.lag_s, "lag_events": lag.lag_events})
    steering = last.steering if last else None
    return {
        "controller": controller.holder, "leader": leader, "probed_at": last.now if last else None,
        "store": controller.store_status(),
        "regions": regions, "replication": lags,
        "table": table, "fail_static": bool((table or {}).get("fail_static")),
        "decision": None if steering is None else {
            "weights": {g: dict(w) for g, w in steering.weights.items()}, "fail_static": steering.fail_static,
            "alerts": list(steering.alerts), "reasons": [list(r) for r in steering.reasons],
            "problems": list(last.problems) if last else []},
        "overrides": last.snapshot.overrides.to_dict() if last else {},
        "failback": {r: p.to_dict() for r, p in steering.failback.items()} if steering else {},
        "dns": controller.dns.status() if controller.dns else None,
    }


def operator_views(controller: Controller, drills: DrillRunner) -> dict[str, Any]:
    """Drains (with actor and expiry), failback stages and running drills (failover.status_view).
    Answers while the control store is unreachable (the journal is then not read)."""
    now = time.time()
    last = controller.last
    overrides = last.snapshot.overrides.to_dict() if last else {}
    failback = {r: p.to_dict() for r, p in last.steering.failback.items()} if last else {}
    entries: list[Any] = []
    if overrides.get("drains"):  # who drained: the journal; while the store is unreachable, "unknown"
        try:
            entries = controller.journal.entries(limit=status_view.JOURNAL_LOOKBACK)
        except TemporaryError:
            pass
    return {"drains": status_view.drains_view(overrides, entries, now=now),
            "failback_stages": status_view.failback_view(failback, controller.settings, now=now),
            "failback_holds_s": list(controller.settings.failback_hold_s),
            "drills": status_view.drills_view(r.document() for r in drills.records())}


def create_app(*, controller: Controller, tokens: TokenBook, drills: DrillRunner,
               retention_key: bytes | None = None, gamedays: Path | None = None) -> FastAPI:
    app = FastAPI(title="ShopNow controller", docs_url=None, redoc_url=None)
    oa.install(app)
    controller_metrics.mount(app, controller)

    def need(permission: Permission) -> Callable[..., Principal]:
        def check(authorization: Optional[str] = Depends(oa.authorization)) -> Principal:
            return tokens.authorize(authorization, permission)
        return check

    dashboard.mount(app, gamedays_dir=gamedays if gamedays is not None else gamedays_dir({}),
                    reader=need(Permission.READ))

    @app.exception_handler(Unauthorized)
    async def _unauthorized(_: Request, exc: Unauthorized) -> JSONResponse:
        return unauthorized_response(exc.field, exc.reason)

    @app.exception_handler(Forbidden)
    async def _forbidden(_: Request, exc: Forbidden) -> JSONResponse:
        return _error(403, exc.field, exc.reason)

    @app.exception_handler(DrillConflict)
    async def _conflict(_: Request, exc: DrillConflict) -> JSONResponse:
        return _error(409, exc.field, exc.reason)

    install_error_handlers(app)  # InputError and FastAPI's own validation errors: 422, one error body

    @app.exception_handler(NotLeader)
    async def _standby(_: Request, exc: NotLeader) -> JSONResponse:
        leader = controller.leader_info()
        where = f" at {leader['api_url']}" if leader.get("api_url") else ""
        return _error(503, "leader", f"this controller ({controller.holder}) is a standby; send changes to the "
                                     f"leader {leader.get('holder') or '(none elected yet)'}{where}",
                      leader=leader.get("holder"), leader_api=leader.get("api_url"))

    @app.exception_handler(TemporaryError)
    async def _temporary(_: Request, exc: TemporaryError) -> JSONResponse:
        response = _error(503, "controller", str(exc))
        response.headers["Retry-After"] = str(max(1, round(exc.delay)))
        return response

    @app.exception_handler(PermanentError)
    async def _permanent(_: Request, exc: PermanentError) -> JSONResponse:
        return _error(500, "controller", str(exc))

    def changed(overrides: Any) -> dict[str, Any]:
        return {"ok": True, "overrides": overrides.to_dict()}

    @app.get("/v1/status", responses={**oa.ok(), **_READ})
    def status(_: Principal = Depends(need(Permission.READ))) -> dict[str, Any]:
        return {**status_document(controller), **operator_views(controller, drills)}

    @app.post("/v1/regions/{region}/drain", responses={**_CHANGED, **_NOT_JSON, **_CHANGE})
    def drain(region: _PATH_ID, body: DrainBody, who: Principal = Depends(need(Permission.DIRECT))) -> dict[str, Any]:
        ttl = parse_duration(body.ttl)
        return changed(controller.change_overrides(
            lambda s: request_drain(s, region=region, force=body.force, ttl_s=ttl, reason=body.reason),
            actor=who.actor, action=Action.DRAIN, reason=body.reason,
            inputs={"region": region, "force": body.force, "ttl_s": ttl}))

    @app.post("/v1/regions/{region}/undrain", responses={**_CHANGED, **_NOT_JSON, **_CHANGE})
    def undrain(region: _PATH_ID, body: UndrainBody, who: Principal = Depends(need(Permission.DIRECT))) -> dict[str, Any]:
        return changed(controller.change_overrides(
            lambda s: request_undrain(s, region=region), actor=who.actor, action=Action.UNDRAIN,
            reason=body.reason, inputs={"region": region}))

    @app.post("/v1/users/{user_id}/delete", responses={
        **oa.ok({"type": "object", "required": ["user_id", "geography", "complete", "regions"]}, "erased everywhere"),
        **_NOT_JSON, **oa.errors(401, 403, 422, 503, why={503: "not erased in every region (the body says where "
                                                                "not; retry)"})})
    def delete_user(user_id: _PATH_ID, body: DeleteUserBody,
                    who: Principal = Depends(need(Permission.DIRECT))) -> JSONResponse:
        report = erase_user(controller.topology, user_id, now=controller.clock(), reason=body.reason,
                            record=lambda why, inputs: controller.journal.append(
                                actor=who.actor, action=Action.NOTE, reason=why, inputs=inputs),
                            pseudonym_key=retention_key)
        return JSONResponse(status_code=200 if report["complete"] else 503, content=report)

    @app.post("/v1/steer", responses={**_CHANGED, **_NOT_JSON, **_CHANGE})
    def steer(body: SteerBody, who: Principal = Depends(need(Permission.DIRECT))) -> dict[str, Any]:
        ttl = parse_duration(body.ttl)
        return changed(controller.change_overrides(
            lambda s: request_steer(s, geography=body.geography, weights=body.weights, ttl_s=ttl, reason=body.reason),
            actor=who.actor, action=Action.OVERRIDE, reason=body.reason,
            inputs={"geography": body.geography, "weights": body.weights, "ttl_s": ttl}))

    @app.delete("/v1/steer/{geography}", responses={**_CHANGED, **_CHANGE})
    def unsteer(geography: _PATH_ID, reason: str = Query("", max_length=MAX_REASON_LEN),
                who: Principal = Depends(need(Permission.DIRECT))) -> dict[str, Any]:
        return changed(controller.change_overrides(
            lambda s: clear_steer(s, geography=geography), actor=who.actor, action=Action.OVERRIDE_CLEARED,
            reason=reason, inputs={"geography": geography}))

    @app.post("/v1/drills", responses={
        **oa.ok({"type": "object", "required": ["dry_run", "plan"]}, "dry run: the plan"),
        **oa.ok({"type": "object", "required": ["id", "status", "plan"]}, "the drill started", code=202),
        **_NOT_JSON, **oa.errors(401, 403, 409, 422, 503, why={409: "another drill runs, or the region cannot be "
                                                                     "drilled now"})})
    def drill(body: DrillBody, who: Principal = Depends(need(Permission.DRILL))) -> JSONResponse:
        hold = parse_duration(body.hold, field="hold")
        if body.dry_run:
            return JSONResponse({"dry_run": True, "plan": plan_document(drills.plan(body.region, hold_s=hold))})
        record = drills.start(body.region, hold_s=hold, actor=who.actor, reason=body.reason)
        return JSONResponse(status_code=202, content={"id": record.id, "status": record.status,
                                                      "plan": record.plan})

    @app.get("/v1/drills/{drill_id}", responses={**oa.ok(), **oa.errors(401, 404)})
    def drill_status(drill_id: _PATH_ID, _: Principal = Depends(need(Permission.READ))) -> dict[str, Any]:
        try:
            return drills.get(drill_id).document()
        except InputError as exc:
            raise _NotFound(exc.field, exc.reason) from exc

    @app.exception_handler(_NotFound)
    async def _not_found(_: Request, exc: _NotFound) -> JSONResponse:
        return _error(404, exc.field, exc.reason)

    @app.get("/v1/journal", responses={**oa.ok({"type": "object", "required": ["entries"]}),
                                       **oa.errors(401, 422, 503)})
    def journal(limit: int = Query(50, ge=0, le=10_000),
                _: Principal = Depends(need(Permission.READ))) -> dict[str, Any]:
        entries = controller.journal.entries(limit=limit)
        return {"entries": [{**e.body(), "hash": e.hash} for e in entries]}

    return app


class _NotFound(InputError):
    """An id the API does not know (HTTP 404)."""


class ApiError(InputError):
    """The control API refused a request; `status` is its HTTP status, `body` its JSON."""

    def __init__(self, status: int, body: Mapping[str, Any]) -> None:
        err = body.get("error") if isinstance(body.get("error"), Mapping) else {}
        field = str(err.get("field") or "request")
        message = str(err.get("message") or body.get("detail") or body)
        super().__init__(field, f"HTTP {status}: {message}")
        self.status, self.body = status, body


class ControlClient:
    """The operator CLI's (and chaos's) way to the control API; follows a standby's 503 to the leader once."""

    def __init__(self, base_url: str, token: str, *, transport: httpx.BaseTransport | None = None,
                 timeout_s: float = 10.0) -> None:
        self.base_url, self._token, self._transport, self._timeout = base_url.rstrip("/"), token, transport, timeout_s

    def _request(self, method: str, path: str, *, json: Any = None, params: Any = None) -> Any:
        base = self.base_url
        for _ in range(2):
            try:
                with httpx.Client(transport=self._transport, timeout=self._timeout, trust_env=False) as client:
                    response = client.request(method, base + path, json=json, params=params,
                                              headers={"Authorization": f"Bearer {self._token}"})
            except httpx.HTTPError as exc:
                raise TemporaryError(f"cannot reach the control API at {base} ({type(exc).__name__}); is the "
                                     "controller running (`regionctl up`)?", delay=1.0) from exc
            try:
                body = response.json()
            except ValueError:
                body = {"detail": response.text[:200]}
            if response.status_code == 503 and isinstance(body, Mapping) and body.get("leader_api") \
                    and body["leader_api"].rstrip("/") != base:
                base = body["leader_api"].rstrip("/")
                continue
            if response.status_code >= 400:
                raise ApiError(response.status_code, body if isinstance(body, Mapping) else {"detail": body})
            return body
        raise ApiError(503, body)

    def status(self) -> Any:
        return self._request("GET", "/v1/status")

    def wait_until_healthy(self, *, timeout_s: float = 60.0, interval_s: float = 0.3) -> None:
        """Block until the controller reports every region healthy (the stack is ready for load);
        TemporaryError after `timeout_s`."""
        def healthy() -> bool:
            try:
                regions = self.status()["regions"]
            except (ShopNowError, KeyError, TypeError):
                return False
            return bool(regions) and all(r.get("state") == "healthy" for r in regions.values())

        wait_until(healthy, timeout=timeout_s, interval=interval_s, what="every region healthy")

    def drain(self, region: str, *, reason: str, force: bool = False, ttl: str | float | None = None) -> Any:
        return self._request("POST", f"/v1/regions/{region}/drain", json={"reason": reason, "force": force, "ttl": ttl})

    def undrain(self, region: str, *, reason: str) -> Any:
        return self._request("POST", f"/v1/regions/{region}/undrain", json={"reason": reason})

    def steer(self, geography: str, weights: Mapping[str, int], *, reason: str, ttl: str | float | None = None) -> Any:
        return self._request("POST", "/v1/steer", json={"geography": geography, "weights": dict(weights),
                                                        "ttl": ttl, "reason": reason})

    def clear_steer(self, geography: str, *, reason: str) -> Any:
        return self._request("DELETE", f"/v1/steer/{geography}", params={"reason": reason})

    def drill(self, region: str, *, dry_run: bool, reason: str = "", hold: str | float | None = None) -> Any:
        return self._request("POST", "/v1/drills", json={"region": region, "dry_run": dry_run, "hold": hold,
                                                         "reason": reason})

    def drill_status(self, drill_id: str) -> Any:
        return self._request("GET", f"/v1/drills/{drill_id}")

    def journal(self, limit: int = 50) -> Any:
        return self._request("GET", "/v1/journal", params={"limit": limit})


def serve(*, controller: Controller, tokens: TokenBook, drills: DrillRunner, host: str, port: int,
          retention_key: bytes | None = None, gamedays: Path | None = None,
          log: Callable[[str], None] = lambda line: print(line, flush=True)) -> None:
    """Run the controller loop in a thread and the API in this one until SIGTERM/SIGINT; then resign."""
    import uvicorn

    stopping = threading.Event()
    # uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown; with these handlers in place the
    # re-raised signal only marks the stop, so the lease is given back below instead of dying first.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda _signum, _frame: stopping.set())
    loop = threading.Thread(target=controller.run, kwargs={"stop": stopping.is_set}, name="controller", daemon=True)
    loop.start()
    log(f"API id={controller.holder} url=http://{host}:{port}")
    server = uvicorn.Server(uvicorn.Config(create_app(controller=controller, tokens=tokens, drills=drills,
                                                      retention_key=retention_key, gamedays=gamedays),
                                           host=host, port=port, log_level="warning", access_log=False))
    try:
        server.run()
    finally:
        stopping.set()
        controller.poke()
        loop.join(timeout=controller.settings.interval_s + controller.settings.probe_timeout_s + 5)
        log(f"STOPPED id={controller.holder}")


def _beside_state(environ: Mapping[str, str], name: str) -> Path:
    """<REGIONCTL_STATE_DIR>/../<name>, else var/<name> of the repository."""
    from regions.topology import REPO_ROOT

    state = environ.get("REGIONCTL_STATE_DIR")
    return (Path(state).parent / name) if state else REPO_ROOT / "var" / name


def reports_dir(environ: Mapping[str, str]) -> Path:
    """Where drill reports go: <REGIONCTL_STATE_DIR>/../drills, else var/drills."""
    return _beside_state(environ, "drills")


def gamedays_dir(environ: Mapping[str, str]) -> Path:
    """Where game days write their reports (regionctl gameday): <REGIONCTL_STATE_DIR>/../gamedays, else var/gamedays."""
    return _beside_state(environ, "gamedays")
