"""The published OpenAPI documents of the cell, the edge and the control API, checked with
schemathesis against the real servers: two regions (redis-server + cell each, real bundles), the
edge routing to those cells, and a controller (the control API) judging them, all started by
regions.stack.up on free ports as `regionctl up` would (without the replicators and workers).

Asserts: each document has the one Error component in every error response, the bearer scheme
where a token is needed, the request bodies with the contracts' bounds; a bounded schemathesis run
(tests/openapi_conformance.py) finds no 5xx, no undocumented status, no body that violates the
schema, no invalid input accepted, no auth ignored. And the run is live: a document that leaves
out a status the server answers, or demands a field the server does not send, is caught.
"""
from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from schemathesis import GenerationMode

from contracts.limits import MAX_BATCH, MAX_COUNT, MAX_ID_LEN, MAX_REASON_LEN
from contracts.openapi import ERROR_REF
from failover.control_api import ControlClient
from regions import stack
from regionctl.stack_specs import stack_specs
from tests.openapi_conformance import conformance_failures
from regions.topology import load_topology
from tests.stack_helpers import publish_geo_bundles, write_topology

pytestmark = pytest.mark.slow

REGIONS = (("us-east", "us"), ("eu-west", "eu"))
EXAMPLES = 8
"""Examples per operation and mode: 31 operations x 2 modes x 8, about 500 requests (deterministic:
derandomized, so every run sends the same ones)."""


class Servers:
    def __init__(self, state: Path, cell: str, edge: str, control: str) -> None:
        self.state, self.cell, self.edge, self.control = state, cell, edge, control

    def token(self, role: str) -> str:
        return stack.token_for(self.state, role)

    def document(self, base: str) -> dict[str, Any]:
        resp = httpx.get(base + "/openapi.json", timeout=5)
        assert resp.status_code == 200, resp.text
        return resp.json()


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory, tiny_geo_bundles: dict[str, Path]) -> Iterator[Servers]:
    root = tmp_path_factory.mktemp("openapi")
    topo_file = write_topology(root / "topology.toml", regions=REGIONS)  # one cell per geography is enough
    topo, state = load_topology(topo_file), root / "stack"
    urls = stack.stack_urls(state)
    publish_geo_bundles(tiny_geo_bundles, Path(urls.artifacts.removeprefix("file://")))
    specs = [s for s in stack_specs(topo, state_dir=state, urls=urls)
             if s.kind in ("redis", "cell", "edge") or s.name == "controller-a"]
    try:
        stack.up(specs, topology_path=topo_file, state_dir=state)
        control = f"http://127.0.0.1:{topo.settings.controller_port}"
        ControlClient(control, stack.token_for(state, "viewer")).wait_until_healthy()
        yield Servers(state, f"http://127.0.0.1:{topo.region('us-east').http_port}",
                      f"http://127.0.0.1:{topo.settings.edge_port}", control)
    finally:
        stack.down(state_dir=state)


def _error_responses(document: dict[str, Any]) -> dict[str, Any]:
    return {f"{m.upper()} {p} {code}": r for p, item in document["paths"].items() for m, op in item.items()
            for code, r in op["responses"].items() if code[0] in "45"}


def test_every_document_has_one_error_body_bearer_auth_and_the_contract_bounds(servers: Servers) -> None:
    cell, edge, control = (servers.document(b) for b in (servers.cell, servers.edge, servers.control))
    for doc in (cell, edge, control):
        errors = _error_responses(doc)
        assert errors and all(r["content"] == {"application/json": {"schema": {"$ref": ERROR_REF}}}
                              for r in errors.values())
        assert "HTTPValidationError" not in doc["components"]["schemas"]
        assert doc["components"]["schemas"]["Error"]["required"] == ["error"]
    for doc in (cell, edge):
        batch = doc["components"]["schemas"]["EventsBatch"]["properties"]["events"]
        assert (batch["minItems"], batch["maxItems"]) == (1, MAX_BATCH)
        body = doc["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": "#/components/schemas/EventsBatch"}
        assert {"413", "422", "503"} <= set(doc["paths"]["/v1/events"]["post"]["responses"])
        home = doc["paths"]["/v1/recommendations/homepage"]["get"]
        count = next(p for p in home["parameters"] if p["name"] == "count")["schema"]
        assert (count["minimum"], count["maximum"]) == (1, MAX_COUNT)
        user = next(p for p in home["parameters"] if p["name"] == "user_id")["schema"]
        assert MAX_ID_LEN in (user.get("maxLength"), *(s.get("maxLength") for s in user.get("anyOf", [])))
    faults = cell["paths"]["/admin/faults"]["post"]
    assert faults["security"] == [{"bearer": []}] and {"401", "403", "422"} <= set(faults["responses"])
    assert cell["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": cell["components"]["securitySchemes"]["bearer"]["description"]}
    assert not any(p.get("name", "").lower() == "authorization"
                   for doc in (cell, control) for item in doc["paths"].values() for op in item.values()
                   for p in op.get("parameters", ()))
    drain = control["paths"]["/v1/regions/{region}/drain"]["post"]
    assert drain["security"] == [{"bearer": []}]
    assert {"200", "401", "403", "422", "503"} <= set(drain["responses"])
    drills = control["paths"]["/v1/drills"]["post"]["responses"]
    assert {"200", "202", "409"} <= set(drills)
    assert control["components"]["schemas"]["DrainBody"]["properties"]["reason"]["maxLength"] == MAX_REASON_LEN
    for url in (servers.cell + "/admin/faults", servers.control + "/v1/regions/us-east/drain"):
        refused = httpx.post(url, json={"reason": "no token"}, timeout=5)
        assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == "Bearer", refused.text
        assert set(refused.json()) == {"error"} and refused.json()["error"]["field"] == "authorization"
    assert set(edge["paths"]) >= {"/v1/recommendations/homepage", "/v1/recommendations/similar",
                                  "/v1/recommendations/cart", "/v1/events", "/readyz", "/healthz", "/metrics"}


def _clear_faults(servers: Servers) -> Any:
    def after(case: Any) -> None:
        if case.operation.path == "/admin/faults" and case.method == "POST":
            httpx.delete(servers.cell + "/admin/faults", timeout=5,
                         headers={"Authorization": f"Bearer {servers.token('chaos')}"})
    return after


@pytest.mark.parametrize("server", ["cell", "edge", "control"])
def test_schemathesis_finds_nothing_wrong(servers: Servers, server: str) -> None:
    base = getattr(servers, server)
    role = {"cell": "chaos", "edge": "viewer", "control": "director"}[server]
    started = time.perf_counter()
    timing: dict[str, float] = {}
    failures = conformance_failures(servers.document(base), base, token=servers.token(role), max_examples=EXAMPLES,
                                    after=_clear_faults(servers) if server == "cell" else None, timing=timing)
    print(f"\nschemathesis {server}: {time.perf_counter() - started:.1f} s, per operation (s): {timing}")
    assert not failures, "\n\n".join(failures)


def test_the_run_catches_an_undocumented_status_and_a_wrong_schema(servers: Servers) -> None:
    document = servers.document(servers.cell)
    undocumented = copy.deepcopy(document)  # the cell answers 404 for an unknown product: leave it out
    del undocumented["paths"]["/v1/recommendations/similar"]["get"]["responses"]["404"]
    found = conformance_failures(undocumented, servers.cell, max_examples=5, only="GET /v1/recommendations/similar",
                                 modes=(GenerationMode.POSITIVE,))
    assert found and "404" in found[0], found
    wrong = copy.deepcopy(document)  # a field the cell never sends
    wrong["components"]["schemas"]["Slate"]["required"].append("confidence")
    found = conformance_failures(wrong, servers.cell, max_examples=5, only="GET /v1/recommendations/homepage",
                                 modes=(GenerationMode.POSITIVE,))
    assert found and "confidence" in found[0], found
    lax = copy.deepcopy(document)  # documents a bound the cell does not enforce: invalid input accepted
    lax["paths"]["/healthz"]["get"]["parameters"] = [
        {"name": "probe", "in": "query", "required": True, "schema": {"type": "integer", "minimum": 1}}]
    found = conformance_failures(lax, servers.cell, max_examples=5, only="GET /healthz",
                                 modes=(GenerationMode.NEGATIVE,))
    assert found and "negative" in found[0].lower(), found


@pytest.mark.parametrize("body", [{"ranking_latency_ms": 250, "freeze_index": "yes"},
                                  {"ranking_latency_ms": 250, "homepage_status": False},
                                  {"ranking_latency_ms": 250, "homepage_status": 404.0}])
def test_a_refused_fault_body_changes_nothing(servers: Servers, body: dict[str, Any]) -> None:
    """Found while writing the faults body's schema: a later field's refusal left the earlier one
    applied, and `false` / `404.0` passed the status check (False == 0, 404.0 == 404)."""
    headers = {"Authorization": f"Bearer {servers.token('chaos')}"}
    resp = httpx.post(servers.cell + "/admin/faults", json=body, headers=headers, timeout=5)
    assert resp.status_code == 422 and set(resp.json()) == {"error"}, resp.text
    assert resp.json()["error"]["field"] in body
    ready = httpx.get(servers.cell + "/readyz", timeout=5).json()
    assert ready["faults"]["ranking_latency_ms"] == 0 and ready["index_frozen"] is False
