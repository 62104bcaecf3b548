"""An open-loop, bounded load generator (loopback only) that records every request's outcome.

Requests are scheduled at a fixed rate whatever the answers do (open loop: a slow server does not
slow the arrivals, so latency under failure is measured honestly). The load is bounded in count
and time: it stops at `duration_s`, never keeps more than `max_in_flight` requests open (a request
that cannot be sent because of that cap is recorded as failed, `status="client-overload"`), and
refuses any target that is not a loopback address.

Each record (one JSON line): t (send time), kind (homepage|similar|events), status, ok, latency_ms,
tier, region, slate_len, user_id, geo, and for event batches the sequence numbers acknowledged.
"""
from __future__ import annotations

import asyncio
import ipaddress
import json
import random
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import urlparse

import httpx

from regions.errors import InputError

MAX_RATE = 2000.0
"""Upper bound of a load run: a loopback test tool, not a stress weapon."""
MAX_DURATION_S = 3600.0
"""A load run ends by itself within an hour at most."""


@dataclass(frozen=True)
class LoadMix:
    homepage: float = 0.8
    similar: float = 0.1
    events: float = 0.1
    """Most traffic is the homepage; one request in ten logs a batch of events."""


@dataclass(frozen=True)
class LoadSpec:
    base_url: str
    rate: float
    duration_s: float
    users: Sequence[str]
    items: Sequence[str]
    mix: LoadMix = LoadMix()
    seed: int = 7
    timeout_s: float = 1.0
    """A request unanswered after 1 s counts as failed (the SLO is 180 ms)."""
    max_in_flight: int = 256
    events_per_batch: int = 3


def validate(spec: LoadSpec) -> None:
    host = urlparse(spec.base_url).hostname or ""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise InputError("base_url", f"load goes to loopback addresses only (127.0.0.1), got {host!r}")
    if not 0 < spec.rate <= MAX_RATE:
        raise InputError("rate", f"must be in (0, {MAX_RATE:g}] requests/s, got {spec.rate}")
    if not 0 < spec.duration_s <= MAX_DURATION_S:
        raise InputError("duration", f"must be in (0, {MAX_DURATION_S:g}] seconds, got {spec.duration_s}")
    if not spec.users or not spec.items:
        raise InputError("users", "the load needs at least one user id and one item id")


class _Sequence:
    def __init__(self) -> None:
        self.next = 0

    def take(self, n: int) -> list[int]:
        out = list(range(self.next, self.next + n))
        self.next += n
        return out


async def _one(client: httpx.AsyncClient, spec: LoadSpec, rng: random.Random, seqs: _Sequence, now: Callable[[], float]) -> dict[str, Any]:
    user = rng.choice(spec.users)
    geo = user.split("-", 1)[0]
    roll = rng.random()
    rec: dict[str, Any] = {"t": now(), "user_id": user, "geo": geo, "tier": None, "region": None, "slate_len": -1}
    start = time.perf_counter()
    try:
        if roll < spec.mix.homepage:
            rec["kind"] = "homepage"
            resp = await client.get("/v1/recommendations/homepage", params={"user_id": user, "count": 8})
        elif roll < spec.mix.homepage + spec.mix.similar:
            rec["kind"] = "similar"
            resp = await client.get("/v1/recommendations/similar", params={"product_id": rng.choice(spec.items), "count": 8})
        else:
            rec["kind"] = "events"
            numbers = seqs.take(spec.events_per_batch)
            batch = [
                {"event_id": uuid.uuid4().hex, "user_id": user, "item_id": rng.choice(spec.items),
                 "type": rng.choice(("view", "view", "view", "cart", "purchase")), "ts": time.time(), "seq": n}
                for n in numbers
            ]
            resp = await client.post("/v1/events", json={"events": batch})
            rec["seqs"] = numbers
        rec["latency_ms"] = (time.perf_counter() - start) * 1000
        rec["status"] = resp.status_code
        rec["ok"] = resp.status_code < 500 and resp.status_code != 429
        if resp.headers.get("content-type", "").startswith("application/json"):
            body = resp.json()
            rec["tier"] = body.get("tier")
            rec["region"] = body.get("region")
            if "items" in body:
                rec["slate_len"] = len(body["items"])
            if rec["kind"] == "events":
                rec["acked"] = resp.status_code == 200
                stored = body.get("stored") or {}
                if rec["region"] is None and stored:
                    rec["region"] = next(iter(stored))
    except httpx.HTTPError as exc:
        rec["latency_ms"] = (time.perf_counter() - start) * 1000
        rec["status"] = type(exc).__name__
        rec["ok"] = False
    return rec


async def run_load_async(spec: LoadSpec, out_path: Path, *, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    validate(spec)
    rng = random.Random(spec.seed)
    seqs = _Sequence()
    total = int(spec.rate * spec.duration_s)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    in_flight: set[asyncio.Task[dict[str, Any]]] = set()
    written = failed = 0
    limits = httpx.Limits(max_connections=spec.max_in_flight, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=spec.base_url, timeout=spec.timeout_s, limits=limits) as client:
        with open(out_path, "w") as out:
            def write(rec: dict[str, Any]) -> None:
                nonlocal written, failed
                out.write(json.dumps(rec) + "\n")
                written += 1
                failed += 0 if rec.get("ok") else 1

            t0 = time.monotonic()
            for i in range(total):
                due = t0 + i / spec.rate
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                done = {t for t in in_flight if t.done()}
                for task in done:
                    write(task.result())
                in_flight -= done
                if len(in_flight) >= spec.max_in_flight:
                    write({"t": time.time(), "kind": "homepage", "status": "client-overload", "ok": False,
                           "latency_ms": 0.0, "tier": None, "region": None, "slate_len": -1})
                    continue
                in_flight.add(asyncio.create_task(_one(client, spec, rng, seqs, time.time)))
                if progress and i % max(int(spec.rate), 1) == 0:
                    progress(i, total)
            for task in asyncio.as_completed(list(in_flight)):
                write(await task)
    return {"requests": written, "failed": failed, "path": str(out_path)}


def run_load(spec: LoadSpec, out_path: Path, *, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    return asyncio.run(run_load_async(spec, out_path, progress=progress))


def read_records(path: Path) -> list[dict[str, Any]]:
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]
