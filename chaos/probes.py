"""Chaos Toolkit probes of the local stack: what users see through the edge, and what the control
plane decided. Probes only read; they never change the stack.

Values are plain numbers, booleans or dicts so that steady-state tolerances apply directly:
`true`, `{"type": "range", "range": [0.99, 1.0]}`, or a range with `"target": "full"` on tier_mix.
Configuration keys: see chaos.actions (state_dir, topology, control_store).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import httpx
import numpy as np
from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration, Secrets

from chaos.context import HTTP_TIMEOUT_S, StackContext, context_from
from chaos.measurement import tier_mix as count_tiers
from contracts.store_keys import TABLE_KEY
from contracts.tiers import TIER_NAMES

__all__ = [
    "homepage_non_empty", "success_rate", "p99_latency", "tier_mix", "replication_lag", "region_weight",
    "bundle_refused", "residency_audit",
]

TIERS = (*TIER_NAMES, "error")
"""tier_mix always reports every tier (0.0 when absent) so that a range tolerance can target one."""
MAX_PROBE_REQUESTS = 1000
"""A probe is a look, not a load test: `chaos.load` is for load."""


def _users(ctx: StackContext, count: int) -> list[str]:
    geos = sorted(ctx.topology.geographies)
    return [f"{geos[i % len(geos)]}-probe-{i}" for i in range(count)]


def _check_count(requests: int) -> None:
    if not 1 <= requests <= MAX_PROBE_REQUESTS:
        raise ActivityFailed(f"requests must be in [1, {MAX_PROBE_REQUESTS}], got {requests}")


def _homepage_records(ctx: StackContext, requests: int) -> list[dict[str, Any]]:
    """Send `requests` homepage requests through the edge, one after the other; one record each."""
    _check_count(requests)
    records: list[dict[str, Any]] = []
    with httpx.Client(base_url=ctx.edge_url, timeout=HTTP_TIMEOUT_S, trust_env=False) as client:
        for user in _users(ctx, requests):
            rec: dict[str, Any] = {"kind": "homepage", "user_id": user, "tier": None, "slate_len": -1}
            try:
                resp = client.get("/v1/recommendations/homepage", params={"user_id": user, "count": 8})
                rec["latency_ms"] = resp.elapsed.total_seconds() * 1000
                rec["status"] = resp.status_code
                rec["ok"] = resp.status_code < 500 and resp.status_code != 429
                body = resp.json() if resp.headers.get("content-type", "").startswith("application/json") else {}
                rec["tier"] = body.get("tier")
                rec["slate_len"] = len(body.get("items", []))
            except httpx.TimeoutException:
                rec.update(status="timeout", ok=False, latency_ms=HTTP_TIMEOUT_S * 1000)
            except httpx.HTTPError as exc:
                rec.update(status=type(exc).__name__, ok=False, latency_ms=0.0)
            records.append(rec)
    return records


def _records(configuration: Configuration, requests: int, load_file: str | None) -> list[dict[str, Any]]:
    if load_file:
        from chaos.load import read_records

        try:
            records = read_records(Path(load_file))
        except (OSError, json.JSONDecodeError) as exc:
            raise ActivityFailed(f"cannot read load records from {load_file}: {exc}") from exc
        if not records:
            raise ActivityFailed(f"{load_file} holds no load records; run `regionctl load` first")
        return records
    return _homepage_records(context_from(configuration), requests)


def homepage_non_empty(requests: int = 20, configuration: Configuration = None, secrets: Secrets = None) -> bool:
    """True when every one of `requests` homepage requests through the edge succeeded with items."""
    records = _homepage_records(context_from(configuration), requests)
    return all(r["ok"] and r["status"] == 200 and r["slate_len"] > 0 for r in records)


def success_rate(requests: int = 50, load_file: str = "", configuration: Configuration = None,
                 secrets: Secrets = None) -> float:
    """Share of successful requests: `requests` homepage requests now, or every record of `load_file`."""
    records = _records(configuration, requests, load_file or None)
    return sum(1 for r in records if r.get("ok")) / len(records)


def p99_latency(requests: int = 50, load_file: str = "", configuration: Configuration = None,
                secrets: Secrets = None) -> float:
    """p99 latency in ms (failed requests count with the latency they took)."""
    records = _records(configuration, requests, load_file or None)
    return float(np.percentile([float(r.get("latency_ms", 0.0)) for r in records], 99))


def tier_mix(requests: int = 50, load_file: str = "", configuration: Configuration = None,
             secrets: Secrets = None) -> dict[str, float]:
    """Share of answers per tier (full, cached, segment, popularity; error for failures)."""
    records = _records(configuration, requests, load_file or None)
    recs = [r for r in records if r.get("kind", "homepage") != "events"]
    counts = count_tiers({**r, "tier": r.get("tier") if r.get("ok") else None} for r in recs)
    total = max(sum(counts.values()), 1)
    return {tier: counts.get(tier, 0) / total for tier in TIERS}


def _readyz(ctx: StackContext, region: str) -> dict[str, Any] | None:
    try:
        resp = httpx.get(ctx.cell_url(region) + "/readyz", timeout=HTTP_TIMEOUT_S, trust_env=False)
        body = resp.json()
    except (httpx.HTTPError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def replication_lag(source: str = "", destination: str = "", configuration: Configuration = None,
                    secrets: Secrets = None) -> float:
    """Largest replication lag in seconds among the pairs matching source/destination ("" = any),
    as the reachable cells' /readyz report it."""
    ctx = context_from(configuration)
    lags = []
    for region in ctx.topology.regions:
        body = _readyz(ctx, region) or {}
        for pair in body.get("replication") or []:
            if (not source or pair.get("source") == source) and (not destination or pair.get("destination") == destination):
                if isinstance(pair.get("lag_s"), (int, float)):
                    lags.append(float(pair["lag_s"]))
    if not lags:
        raise ActivityFailed(f"no cell reported a replication pair {source or '*'} -> {destination or '*'}; "
                             "are the cells up? see `regionctl ps`")
    return max(lags)


def weight_in(doc: Mapping[str, Any], *, geography: str, region: str) -> float | None:
    """The weight of `region` for `geography` in a routing table, a controller status or an edge
    readyz document (each nests the table's `geos` differently); None when absent."""
    candidates: list[Any] = [doc, doc.get("table"), doc.get("routing"), doc.get("routing_table")]
    for cand in candidates:
        if not isinstance(cand, Mapping):
            continue
        geos = cand.get("geos")
        if isinstance(geos, Mapping) and isinstance(geos.get(geography), Mapping):
            weights = geos[geography].get("regions", {})
            return float(weights.get(region, 0.0))
        weights = cand.get("weights")
        if isinstance(weights, Mapping) and isinstance(weights.get(geography), Mapping):
            return float(weights[geography].get(region, 0.0))
    return None


def region_weight(region: str, geography: str = "", source: str = "table", configuration: Configuration = None,
                  secrets: Secrets = None) -> float:
    """Weight (0-100) the routing gives `region` for `geography` (default: the region's own).
    source: "table" (control store routing/table), "controller" (GET /v1/status) or "edge" (/readyz)."""
    ctx = context_from(configuration)
    try:
        geo = geography or ctx.topology.region(region).geography
    except Exception as exc:
        raise ActivityFailed(f"region_weight: {exc}") from exc
    try:
        if source == "table":
            from failover.control_stores import store_from_url

            with store_from_url(ctx.control_store_url) as store:
                current = store.get(TABLE_KEY)
            if current is None:
                raise ActivityFailed(f"no {TABLE_KEY} in the control store yet; is the controller leader up?")
            doc = json.loads(current.text)
        elif source in ("controller", "edge"):
            url = ctx.controller_url + "/v1/status" if source == "controller" else ctx.edge_url + "/readyz"
            doc = httpx.get(url, timeout=HTTP_TIMEOUT_S, trust_env=False).json()
        else:
            raise ActivityFailed(f"source must be table, controller or edge, got {source!r}")
    except ActivityFailed:
        raise
    except Exception as exc:
        raise ActivityFailed(f"region_weight: cannot read the weights from {source}: {exc}") from exc
    weight = weight_in(doc, geography=geo, region=region) if isinstance(doc, Mapping) else None
    if weight is None:
        raise ActivityFailed(f"region_weight: the {source} document holds no weights for geography {geo!r}")
    return weight


def bundle_refused(region: str, configuration: Configuration = None, secrets: Secrets = None) -> bool:
    """True when the region's cell reports a refused bundle in /readyz (`bundle_refused` not null)."""
    body = _readyz(context_from(configuration), region)
    if body is None:
        raise ActivityFailed(f"the cell of {region} did not answer /readyz; see `regionctl ps`")
    return body.get("bundle_refused") is not None


def residency_audit(configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:
    """The residency audit of the whole stack (replication.residency_audit: every region's Redis and
    every cell's bundle cache); `{"clean": bool, "total_findings": n, "findings": [first 20], ...}`.
    Game days end with it; a tolerance of `{"type": "jsonpath", "path": "$.clean", "expect": true}`
    or a plain check of `clean` in the report makes a leak fail the game day."""
    from replication.redis_io import connect_all
    from replication.residency_audit import audit

    ctx = context_from(configuration)
    clients = connect_all(ctx.topology)
    try:
        doc = audit(ctx.topology, clients, state_dir=ctx.state_dir).to_json()
    finally:
        for client in clients.values():
            client.close()
    doc["findings"] = doc["findings"][:20]
    return doc
