"""The one error body, on a FastAPI app with the shared handlers, and the bearer-token parser."""
from __future__ import annotations

import pytest
from fastapi import FastAPI, Query
from fastapi.testclient import TestClient
from pydantic import BaseModel

from contracts.bearer import bearer_token
from contracts.events_body import BatchTooLarge
from contracts.http_errors import error_body, install_error_handlers
from regions.errors import InputError


class Body(BaseModel):
    name: str


def _client() -> TestClient:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/q")
    def q(count: int = Query(1, ge=1, le=5)) -> dict:
        return {"count": count}

    @app.post("/b")
    def b(body: Body) -> dict:
        return {"name": body.name}

    @app.get("/bad")
    def bad() -> dict:
        raise InputError("thing", "is wrong")

    @app.get("/big")
    def big() -> dict:
        raise BatchTooLarge("events", "too many")

    return TestClient(app)


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "field"), [
    ("GET", "/q?count=9", {}, 422, "count"), ("GET", "/q?count=x", {}, 422, "count"),
    ("POST", "/b", {"json": {}}, 422, "name"), ("GET", "/bad", {}, 422, "thing"), ("GET", "/big", {}, 413, "events"),
])
def test_every_refusal_has_the_one_body(method: str, path: str, kwargs: dict, status: int, field: str) -> None:
    resp = _client().request(method, path, **kwargs)
    assert resp.status_code == status
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"field", "message"} and body["error"]["field"] == field
    assert body["error"]["message"]


def test_error_body_shape() -> None:
    assert error_body("f", "m") == {"error": {"field": "f", "message": "m"}}


@pytest.mark.parametrize(("header", "token"), [
    ("Bearer abc", "abc"), ("Bearer  abc  ", "abc"), ("Bearer ", None), ("Basic abc", None), ("", None), (None, None),
    ("bearer abc", None),
])
def test_bearer_token(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "field"), [
    ("POST", "/b", {"content": b"U\x1cb\xff", "headers": {"content-type": "application/json"}}, 400, "body"),
    ("GET", "/nowhere", {}, 404, "path"),
    ("DELETE", "/q", {}, 405, "method"),
])
def test_starlettes_own_refusals_answer_the_one_error_body(method: str, path: str, kwargs: dict, status: int,
                                                            field: str) -> None:
    resp = _client().request(method, path, **kwargs)
    assert resp.status_code == status
    assert resp.json()["error"]["field"] == field and resp.json()["error"]["message"]
    assert set(resp.json()) == {"error"}
