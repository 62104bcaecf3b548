"""The one error body of every HTTP API of the stack (cell, edge, control API):

    {"error": {"field": "<what was wrong>", "message": "<why, and what is allowed>"}}

plus, where an API says so, extra top-level keys (the edge's partial event answer, a standby's
leader). `install_error_handlers(app)` makes FastAPI's own validation errors (query parameters,
pydantic bodies) and every InputError answer in this shape; an InputError with an `http_status`
attribute (413 for an oversized batch, 404 for an unknown id) answers with that status.
"""
from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from regions.errors import InputError


def error_body(field: str, message: str) -> dict[str, Any]:
    return {"error": {"field": field, "message": message}}


def error_response(status: int, field: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse(status_code=status, content={**error_body(field, message), **extra})


def unauthorized_response(field: str, message: str) -> JSONResponse:
    """401 with the one error body and `WWW-Authenticate: Bearer` (RFC 6750): no token, or an unknown one."""
    response = error_response(401, field, message)
    response.headers["WWW-Authenticate"] = "Bearer"
    return response


def readiness_response(ready: bool, body: dict[str, Any], *, why: str) -> JSONResponse:
    """GET /readyz: 200 with the readiness document when ready, else 503 with the same document
    plus the one error body (field "readiness", `why` as its message)."""
    if ready:
        return JSONResponse(body)
    return JSONResponse(status_code=503, content={**body, **error_body("readiness", why)})


def validation_field(exc: RequestValidationError) -> tuple[str, str]:
    """(field, message) of FastAPI's first validation error: `loc` without its "query"/"body" head."""
    first = exc.errors()[0] if exc.errors() else {"loc": ("request",), "msg": "invalid"}
    field = ".".join(str(p) for p in tuple(first.get("loc", ()))[1:]) or "request"
    return field, str(first.get("msg"))


async def _invalid(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(422, *validation_field(exc))


async def _input(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InputError)
    return error_response(int(getattr(exc, "http_status", 422)), exc.field, exc.reason)


async def _http(_: Request, exc: Exception) -> JSONResponse:
    """Starlette's own refusals (a body that is not JSON: 400, an unknown path: 404, a method the
    route does not have: 405) in the one error body, with their status and headers."""
    assert isinstance(exc, HTTPException)
    field = {400: "body", 404: "path", 405: "method"}.get(exc.status_code, "request")
    response = error_response(exc.status_code, field, str(exc.detail))
    response.headers.update(exc.headers or {})
    return response


def install_error_handlers(app: FastAPI) -> None:
    """422 (or the error's `http_status`) with the one error body for bad input of any kind;
    Starlette's HTTP errors (400, 404, 405) in the same body."""
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(InputError, _input)
    app.add_exception_handler(HTTPException, _http)
