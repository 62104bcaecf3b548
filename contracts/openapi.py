"""The OpenAPI parts shared by the cell, the edge and the control API: one definition of each.

    SCHEMAS              components: Error (the one error body), Event, EventsBatch, Slate, Skip
    errors(*codes)       the `responses=` of a route: each code answers the Error component
    ok(schema)           its 200 (or 202) answer
    json_body(schema)    the `openapi_extra=` of a route that reads its JSON body itself
    authorization        a FastAPI dependency: the bearer security scheme `bearer` in the document,
                         the raw `Authorization` header (or None) for the route's own token check
    finish(document)     adds the components, drops FastAPI's own validation-error schemas (every
                         422 is the Error component), and checks that every error response uses it
    install(app, paths=) serves the finished document at the app's openapi_url

The bounds come from contracts.limits and contracts.events (MAX_COUNT, MAX_ID_LEN, MAX_BATCH, MAX_SEQ,
EVENT_TYPES): the documents reference them, never copy them. tests/test_openapi_conformance.py
runs schemathesis against each real server with these documents.
"""
from __future__ import annotations

import copy
from typing import Any, Callable, Mapping

from fastapi import Depends, FastAPI
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from contracts.bearer import SCHEME
from contracts.events import EVENT_TYPES, MAX_SEQ
from contracts.limits import MAX_BATCH, MAX_COUNT, MAX_ID_LEN
from contracts.tiers import TIER_NAMES

ERROR_REF = "#/components/schemas/Error"

_ID = {"type": "string", "minLength": 1, "maxLength": MAX_ID_LEN}
_OPTIONAL_ID = {"type": ["string", "integer", "null"], "maxLength": MAX_ID_LEN,
                "description": "empty or absent: none (event_id: a fresh one)"}
_CLIENT_ID = {"type": ["string", "integer"], "minLength": 1, "maxLength": MAX_ID_LEN}

SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": {
        "type": "object", "required": ["error"],
        "description": "The one error body of the cell, the edge and the control API (contracts.http_errors); "
                       "some answers add top-level keys (the edge's not_stored, a standby's leader).",
        "properties": {"error": {"type": "object", "required": ["field", "message"], "additionalProperties": False,
                                 "properties": {"field": {"type": "string", "description": "what was wrong"},
                                                "message": {"type": "string",
                                                            "description": "why, and what is allowed"}}}},
    },
    "Event": {
        "type": "object", "required": ["user_id", "item_id", "type"],
        "description": "One interaction (contracts.events.parse_event); unknown keys are ignored.",
        "properties": {
            "user_id": _CLIENT_ID, "item_id": _CLIENT_ID,
            "type": {"type": "string", "enum": list(EVENT_TYPES)},
            "event_id": _OPTIONAL_ID, "session_id": _OPTIONAL_ID,
            "ts": {"type": "number", "exclusiveMinimum": 0,
                   "description": "epoch seconds, at most 300 s in the future; absent: the receiver's clock"},
            "seq": {"type": "integer", "minimum": -1, "maximum": MAX_SEQ,
                    "description": "load generator sequence number; -1: not set"},
            "price": {"type": "number", "minimum": 0},
        },
    },
    "EventsBatch": {
        "type": "object", "required": ["events"],
        "properties": {"events": {"type": "array", "minItems": 1, "maxItems": MAX_BATCH,
                                  "items": {"$ref": "#/components/schemas/Event"},
                                  "description": f"1 to {MAX_BATCH} events (413 above)"}},
    },
    "Skip": {"type": "object", "required": ["tier", "reason"],
             "properties": {"tier": {"type": "string"}, "reason": {"type": "string"}}},
    "Slate": {
        "type": "object", "required": ["items", "tier", "region", "bundle_version", "skipped", "stale"],
        "description": "A cell answer (docs/interfaces.md, 'Cell answer').",
        "properties": {
            "items": {"type": "array", "maxItems": MAX_COUNT, "items": {
                "type": "object", "required": ["item_id", "score"],
                "properties": {"item_id": {"type": "string"}, "score": {"type": "number"}}}},
            "tier": {"type": "string", "enum": [*TIER_NAMES, "edge-popularity"]},
            "region": {"type": "string"}, "bundle_version": {"type": "string"},
            "skipped": {"type": "array", "items": {"$ref": "#/components/schemas/Skip"}},
            "stale": {"type": "boolean"}, "latency_ms": {"type": "number"},
        },
    },
}

MEANING: Mapping[int, str] = {
    400: "the request is malformed",
    401: "no bearer token, or one the API does not know (WWW-Authenticate: Bearer)",
    403: "the token's role may not do this",
    404: "an id the API does not know",
    409: "conflicts with what is running",
    413: f"more than {MAX_BATCH} events in one batch",
    422: "bad input: the error names the field and what is allowed; nothing changed",
    500: "only while the chaos fault homepage_status=500 is injected",
    503: "not available now (retry)",
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def errors(*codes: int, why: Mapping[int, str] | None = None) -> dict[int | str, dict[str, Any]]:
    """The error responses of a route, each answering the Error component; `why` gives a code a
    description of its own (else MEANING's)."""
    out = {code: _json({"$ref": ERROR_REF}, (why or {}).get(code, MEANING[code])) for code in codes}
    if 401 in out:  # contracts.http_errors.unauthorized_response
        out[401]["headers"] = {"WWW-Authenticate": {"required": True, "schema": {"type": "string", "const": "Bearer"}}}
    return out


def ok(schema: dict[str, Any] | None = None, description: str = "OK", code: int = 200) -> dict[int | str, dict[str, Any]]:
    return {code: _json(schema or {"type": "object"}, description)}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def json_body(schema: dict[str, Any]) -> dict[str, Any]:
    """`openapi_extra` of a route that parses its JSON body itself (so FastAPI would not document it)."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def count_parameter(default: int, *, maximum: int = MAX_COUNT) -> dict[str, Any]:
    return {"name": "count", "in": "query", "required": False,
            "schema": {"type": "integer", "minimum": 1, "maximum": maximum, "default": default}}


def id_parameter(name: str, *, required: bool) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": dict(_ID)}


BEARER = HTTPBearer(auto_error=False, scheme_name="bearer",
                    description="Authorization: Bearer <token> (the stack's tokens.json names each token's role)")


def authorization(credentials: HTTPAuthorizationCredentials | None = Depends(BEARER)) -> str | None:
    """The `Authorization` header as sent (for contracts.bearer.bearer_token), None without one."""
    return None if credentials is None else f"{SCHEME}{credentials.credentials}"


def _error_schemas_used(document: Mapping[str, Any]) -> list[str]:
    """Operations whose 4xx/5xx response is not the Error component (a defect of the document)."""
    wrong = []
    for path, item in document.get("paths", {}).items():
        for method, op in item.items():
            for code, response in op.get("responses", {}).items():
                if str(code)[0] in "45":
                    schemas = [c.get("schema") for c in response.get("content", {}).values()]
                    if schemas != [{"$ref": ERROR_REF}]:
                        wrong.append(f"{method.upper()} {path} {code}")
    return wrong


def finish(document: dict[str, Any], *, paths: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The published document: `paths` added (routes served outside FastAPI), the shared
    components in, FastAPI's HTTPValidationError gone; ValueError when an error response does not
    answer the Error component."""
    out = copy.deepcopy(document)
    out.setdefault("paths", {}).update(copy.deepcopy(dict(paths or {})))
    schemas = out.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    for item in out["paths"].values():  # FastAPI's own 422 (validated parameters) answers the Error body too
        for op in item.values():
            response = op.get("responses", {}).get("422")
            if response and response.get("content", {}).get("application/json", {}).get("schema") == {
                    "$ref": "#/components/schemas/HTTPValidationError"}:
                op["responses"]["422"] = errors(422)[422]
    schemas.update(copy.deepcopy(SCHEMAS))
    if paths and any("security" in op for item in paths.values() for op in item.values()):
        out["components"].setdefault("securitySchemes", {})["bearer"] = {"type": "http", "scheme": "bearer"}
    wrong = _error_schemas_used(out)
    if wrong:
        raise ValueError(f"error responses without the Error component: {', '.join(wrong)}")
    return out


def install(app: FastAPI, *, paths: Mapping[str, Any] | None = None) -> Callable[[], dict[str, Any]]:
    """Serve `finish(FastAPI's document, paths=paths)` at the app's openapi_url (built once)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            generated = generate()
            app.openapi_schema = None  # FastAPI keeps what it generated: publish only the finished one
            app.openapi_schema = finish(generated, paths=paths)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return openapi


__all__ = ["BEARER", "ERROR_REF", "MEANING", "SCHEMAS", "authorization", "count_parameter", "errors", "finish",
           "id_parameter", "install", "json_body", "ok", "ref"]
