"""The OpenAPI paths of the edge's read routes, which edge.fast_reads serves outside FastAPI's
routing (so FastAPI cannot generate them): built here from the same bounds fast_reads enforces
(`count` 1..max_count, ids of 1..MAX_ID_LEN characters) and merged by contracts.openapi.install
into the document the edge serves at /openapi.json. tests/test_openapi_conformance.py checks it
against the running edge with schemathesis.
"""
from __future__ import annotations

from typing import Any

from contracts import openapi as oa
from edge.fast_reads import SURFACES

EDGE_SLATE: dict[str, Any] = {"allOf": [oa.ref("Slate"), {
    "type": "object", "required": ["edge_ms", "tried", "outcome", "routing_version"],
    "properties": {
        "edge_ms": {"type": "number"}, "routing_version": {"type": "integer"},
        "outcome": {"type": "string", "enum": ["primary", "retry", "cross_geo", "last_resort"]},
        "tried": {"type": "array", "items": {
            "type": "object", "required": ["region", "role", "anonymous", "max_tier", "result", "ms"],
            "properties": {"region": {"type": "string"}, "role": {"type": "string"}, "anonymous": {"type": "boolean"},
                           "max_tier": {"type": "string"}, "ms": {"type": "number"},
                           "result": {"type": "string", "enum": ["ok", "empty", "timeout", "error"]}}}},
    }}]}

_DEADLINE = {"name": "X-Deadline-Ms", "in": "header", "required": False,
             "description": "the request's budget in milliseconds (> 0; capped at the stack's deadline)",
             "schema": {"type": "string"}}


def _parameters(surface: str, *, default_count: int, max_count: int) -> list[dict[str, Any]]:
    count = oa.count_parameter(default_count, maximum=max_count)
    if surface == "homepage":
        return [oa.id_parameter("user_id", required=True), count, _DEADLINE]
    user = oa.id_parameter("user_id", required=False)
    if surface == "similar":
        return [oa.id_parameter("product_id", required=True), user, count, _DEADLINE]
    cart = {"name": "cart_items", "in": "query", "required": True,
            "description": "comma-separated product ids, each of 1..MAX_ID_LEN characters",
            "schema": {"type": "string", "minLength": 1, "pattern": "[^,\\s]"}}
    return [cart, user, count, _DEADLINE]


def read_paths(*, default_count: int, max_count: int) -> dict[str, Any]:
    """The `paths` entries of GET /v1/recommendations/{homepage,similar,cart} as the edge serves them."""
    paths: dict[str, Any] = {}
    for surface in SURFACES:
        codes = (422,) if surface == "homepage" else (404, 422)
        paths[f"/v1/recommendations/{surface}"] = {"get": {
            "summary": f"{surface.capitalize()} (routed to a cell; the edge's own list when none answers)",
            "operationId": f"edge_{surface}",
            "parameters": _parameters(surface, default_count=default_count, max_count=max_count),
            "responses": {**oa.ok(EDGE_SLATE), **oa.errors(*codes, why={
                404: "every cell would refuse it: the product is unknown", 422: oa.MEANING[422]})},
        }}
    return paths


__all__ = ["EDGE_SLATE", "read_paths"]
