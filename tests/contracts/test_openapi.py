"""contracts.openapi: the published document's shared parts, on a small FastAPI app."""
from __future__ import annotations

import pytest
from fastapi import Depends, FastAPI, Query

from contracts import openapi as oa
from contracts.limits import MAX_BATCH


def _app(**responses: dict) -> FastAPI:
    app = FastAPI()
    oa.install(app, paths={"/served/elsewhere": {"get": {"responses": {**oa.ok(), **oa.errors(422)}}}})

    @app.get("/q", responses={**oa.ok(), **oa.errors(401), **responses})
    def q(count: int = Query(1, ge=1, le=5), authorization: str | None = Depends(oa.authorization)) -> dict:
        return {}

    @app.post("/events", openapi_extra=oa.json_body(oa.ref("EventsBatch")), responses=oa.errors(413))
    def events() -> dict:
        return {}

    return app


def test_the_document_has_the_shared_components_and_every_error_is_the_error_body() -> None:
    doc = _app().openapi()
    q = doc["paths"]["/q"]["get"]
    assert q["responses"]["422"]["content"]["application/json"]["schema"] == {"$ref": oa.ERROR_REF}
    assert q["security"] == [{"bearer": []}]
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert not any(p["name"].lower() == "authorization" for p in q["parameters"])
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    assert doc["components"]["schemas"]["EventsBatch"]["properties"]["events"]["maxItems"] == MAX_BATCH
    assert "/served/elsewhere" in doc["paths"]


def test_an_error_response_with_another_body_is_refused_when_the_document_is_built() -> None:
    app = _app(**{"409": {"description": "conflict", "content": {"application/json": {"schema": {"type": "object"}}}}})
    with pytest.raises(ValueError, match="GET /q 409"):
        app.openapi()
    with pytest.raises(ValueError):  # never publishes the unfinished document on a second call
        app.openapi()
