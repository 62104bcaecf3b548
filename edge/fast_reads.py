"""The edge's read routes as a lean ASGI layer: no FastAPI dependency solving, no pydantic models,
no jsonable_encoder per request; the query string is parsed once and the answer is encoded once
(orjson).

    GET /v1/recommendations/homepage?user_id=&count=            X-Deadline-Ms
    GET /v1/recommendations/similar?product_id=&count=[&user_id=]
    GET /v1/recommendations/cart?cart_items=a,b&count=[&user_id=]

Bad input answers 422 with the stack's one error body (contracts.http_errors), naming the field
and what is allowed, exactly as the FastAPI routes did; everything else (events, health,
readiness, metrics) goes on to the FastAPI app this layer wraps.
"""
from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable, MutableMapping
from urllib.parse import parse_qsl

import orjson

from contracts.http_errors import error_body
from contracts.limits import MAX_ID_LEN
from regions.errors import InputError

log = logging.getLogger("shopnow.edge")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PREFIX = "/v1/recommendations/"
SURFACES = ("homepage", "similar", "cart")
_JSON_HEADERS = [(b"content-type", b"application/json")]


def budget_ms(default_ms: float, header: str | None) -> float:
    """The request's budget: X-Deadline-Ms when given (capped at the default), else the default."""
    if header is None:
        return default_ms
    try:
        asked = float(header)
    except ValueError:
        raise InputError("X-Deadline-Ms", f"must be a number of milliseconds, got {header!r}") from None
    if not asked > 0:
        raise InputError("X-Deadline-Ms", f"must be greater than 0, got {header!r}")
    return min(asked, default_ms)


def _id(params: dict[str, str], name: str, *, required: bool) -> str | None:
    value = params.get(name)
    if value is None:
        if required:
            raise InputError(name, f"is required: give a {name} of 1 to {MAX_ID_LEN} characters")
        return None
    if not 1 <= len(value) <= MAX_ID_LEN:
        raise InputError(name, f"must be 1 to {MAX_ID_LEN} characters, got {len(value)}")
    return value


def _count(params: dict[str, str], *, default: int, maximum: int) -> int:
    raw = params.get("count")
    if raw is None:
        return default
    try:
        count = int(raw)
    except ValueError:
        raise InputError("count", f"must be a whole number 1..{maximum}, got {raw!r}") from None
    if not 1 <= count <= maximum:
        raise InputError("count", f"must be a whole number 1..{maximum}, got {count}")
    return count


def read_call(surface: str, params: dict[str, str], *, default_count: int, max_count: int) -> dict[str, Any]:
    """Pure: the keyword arguments of Edge.recommend for one read (without the budget); InputError
    naming the field when the query is not valid."""
    count = _count(params, default=default_count, maximum=max_count)
    if surface == "homepage":
        return {"surface": surface, "user_id": _id(params, "user_id", required=True), "count": count}
    user_id = _id(params, "user_id", required=False)
    if surface == "similar":
        return {"surface": surface, "user_id": user_id, "product_id": _id(params, "product_id", required=True), "count": count}
    raw = params.get("cart_items")
    if not raw:
        raise InputError("cart_items", "is required: comma-separated item ids")
    items = tuple(i.strip() for i in raw.split(",") if i.strip())
    if not items or any(len(i) > MAX_ID_LEN for i in items):
        raise InputError("cart_items", f"must list 1 or more comma-separated item ids of at most {MAX_ID_LEN} characters")
    return {"surface": surface, "user_id": user_id, "cart_items": items, "count": count}


class FastReads:
    """ASGI middleware: serves the read routes with `edge.recommend`, passes the rest to `app`."""

    def __init__(self, app: ASGIApp, *, edge: Any, default_ms: float) -> None:
        self.app, self.edge, self.default_ms = app, edge, default_ms
        self.default_count, self.max_count = edge.settings.default_count, edge.settings.max_count

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD") or not path.startswith(PREFIX) \
                or path[len(PREFIX):] not in SURFACES:
            await self.app(scope, receive, send)
            return
        status, body = await self.answer(path[len(PREFIX):], scope)
        await send({"type": "http.response.start", "status": status,
                    "headers": [*_JSON_HEADERS, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})

    async def answer(self, surface: str, scope: Scope) -> tuple[int, bytes]:
        try:
            params = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
            deadline = next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"x-deadline-ms"), None)
            call = read_call(surface, params, default_count=self.default_count, max_count=self.max_count)
            answer = await self.edge.recommend(**call, budget_ms=budget_ms(self.default_ms, deadline))
        except InputError as exc:
            return int(getattr(exc, "http_status", 422)), orjson.dumps(error_body(exc.field, exc.reason))
        except Exception as exc:  # the edge keeps serving; the error is logged
            log.exception("read %s failed", surface)
            return 500, orjson.dumps(error_body("server", f"internal error ({type(exc).__name__}); the edge keeps running"))
        return 200, orjson.dumps(answer)
