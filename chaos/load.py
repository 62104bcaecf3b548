"""An open-loop, bounded load generator (loopback only) that records every request's outcome.

Open loop: request i is scheduled at t0 + i / rate whatever the answers do; a slow server does not
slow the arrivals. Latency is measured from each request's SCHEDULED send time, not from when the
generator got round to sending it, so a stalled generator cannot hide latency (no coordinated
omission); how late it sent is recorded too (`lag_ms`), and every run reports its achieved rate
and p99 schedule lag. A run that sent more than 2 % below its rate (`MAX_SHORTFALL`) is invalid:
its `summary["valid"]` is false and a game day built on it is invalid.

Bounded: it stops at `duration_s`, never keeps more than `max_in_flight` requests open (a request
that cannot be sent because of that cap is a failed record, `status="client-overload"`, and is not
counted as sent, so a capped run goes short and invalid); by default the cap is `cap_for(rate,
timeout)` (see there: sized so that it refuses nothing while the timeout holds), refuses
any target that is not a loopback address, and caps rate and duration. `processes` > 1 splits the
schedule over that many worker processes (request i goes to worker i mod N, same t0), each with
its own event loop, for rates one core cannot send (bench/bench_load.py measures that); the
schedule's t0 is set once every worker has started, so spawning them is never schedule lag.

Reacting users (`reactions`, a chaos.reactions.ReactionTable; off by default): after a homepage
answer, the user's clicks, carts and purchases of what it showed are drawn from the table and sent
at once as one `POST /v1/events` batch. These follow-up requests are not on the schedule (a
reaction follows its answer: closed loop by nature); there is at most one per answered homepage,
so they never exceed the homepage rate, and their latency is measured from their own send time.
Each is its own record, kind "events" with `reaction: true`.

Each record (one JSON line): t (scheduled send, epoch s), sent, done (completion), lag_ms,
latency_ms (done - t), kind (homepage|similar|events), user_id, geo, and the answer's meaning from
chaos.load_records (status, ok, tier, region, slate_len, empty, attempts, retries, first_ok,
edge_ms, last_resort, cross_geo, personalised, degraded; for event batches event_ids, acked_ids,
stored_by). Any exception while sending or decoding is a failed record, never an aborted run.
Event ids are uuid4: unique across runs, so the RPO matches events by id.
"""
from __future__ import annotations

import asyncio
import ipaddress
import json
import math
import multiprocessing
import random
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import urlencode, urlparse

import numpy as np

from chaos.http_client import LeanClient
from chaos.reactions import ReactionTable
from chaos.load_records import classify_events, classify_read, failed
from regions.errors import InputError

MAX_RATE = 2000.0
"""Upper bound of a load run: a loopback test tool, not a stress weapon."""
MAX_DURATION_S = 3600.0
"""A load run ends by itself within an hour at most."""
MAX_PROCESSES = 8
"""More generator processes than cores only adds scheduling noise."""
ONE_PROCESS_MAX_RATE = 400.0
"""One generator process keeps its schedule up to a few hundred req/s on this 2-core machine
(bench/bench_load.py: about 950 of 1,000 req/s, 0.5 s p99 lag, with one; 1,000 with two)."""
MAX_SHORTFALL = 0.02
"""A run that sent more than 2 % below its rate is invalid: its figures describe another load."""


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
    max_in_flight: int | None = None
    """Cap on open requests, all processes together; None: `cap_for(rate, timeout_s)`."""
    events_per_batch: int = 3
    processes: int = 1
    """Worker processes sharing the schedule (see the module docstring)."""
    reactions: ReactionTable | None = None
    """Users react to their homepages (see the module docstring); None: they do not."""


CAP_HEADROOM = 1.25
"""The open-request cap is 25 % above rate x timeout (see cap_for)."""
MIN_CAP = 32


def cap_for(rate: float, timeout_s: float = 1.0) -> int:
    """The open-request cap of a run at `rate` whose requests give up after `timeout_s`.

    Little's law: open requests = arrival rate x time each stays open, and no request stays open
    longer than the timeout, so at most rate x timeout are open at once while the timeout holds
    (300 req/s x 1 s = 300: the former fixed cap of 256 refused requests of a slow-but-answering
    stack, which made the load itself go short). The cap keeps 25 % above that for timeouts that
    fire a little late on a starved event loop; it only bites when the generator cannot even time
    its requests out, and then the run is short and invalid, as it should be. It still bounds the
    sockets one run opens (a test tool, not a flood)."""
    return max(MIN_CAP, math.ceil(rate * timeout_s * CAP_HEADROOM))


def processes_for(rate: float) -> int:
    """Generator processes a game day uses for `rate` (see ONE_PROCESS_MAX_RATE)."""
    return 1 if rate <= ONE_PROCESS_MAX_RATE else 2


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
    if isinstance(spec.processes, bool) or not isinstance(spec.processes, int) or not 1 <= spec.processes <= MAX_PROCESSES:
        raise InputError("processes", f"must be a whole number in [1, {MAX_PROCESSES}], got {spec.processes!r}")
    if spec.max_in_flight is not None and (isinstance(spec.max_in_flight, bool) or not isinstance(spec.max_in_flight, int)
                                           or spec.max_in_flight < 1):
        raise InputError("max_in_flight", f"must be a whole number >= 1 or None (cap_for the rate), got {spec.max_in_flight!r}")
    if not spec.users or not spec.items:
        raise InputError("users", "the load needs at least one user id and one item id")


def _request(spec: LoadSpec, rng: random.Random) -> tuple[str, str, str, bytes | None, list[str]]:
    """(kind, user, target, body, event ids) of the next request, drawn from the mix."""
    user = rng.choice(spec.users)
    roll = rng.random()
    if roll < spec.mix.homepage:
        return "homepage", user, "/v1/recommendations/homepage?" + urlencode({"user_id": user, "count": 8}), None, []
    if roll < spec.mix.homepage + spec.mix.similar:
        target = "/v1/recommendations/similar?" + urlencode({"product_id": rng.choice(spec.items), "count": 8})
        return "similar", user, target, None, []
    batch = [{"event_id": uuid.uuid4().hex, "user_id": user, "item_id": rng.choice(spec.items),
              "type": rng.choice(("view", "view", "view", "cart", "purchase")), "ts": time.time()}
             for _ in range(spec.events_per_batch)]
    return "events", user, "/v1/events", json.dumps({"events": batch}).encode(), [e["event_id"] for e in batch]


class _ScheduleClock:
    """Epoch seconds read off the monotonic clock: the schedule, `sent` and `done` of every record are on one
    clock, so a wall-clock slew or step during a run can neither put a send before its slot nor bend a latency."""

    def __init__(self, epoch0: float) -> None:
        self.epoch0, self.mono0 = epoch0, time.monotonic() - (time.time() - epoch0)

    def now(self) -> float:
        return self.epoch0 + (time.monotonic() - self.mono0)

    def slot(self, i: int, rate: float) -> float:
        return self.epoch0 + i / rate


async def _one(client: LeanClient, spec: LoadSpec, request: tuple[str, str, str, bytes | None, list[str]],
               scheduled: float, clock: _ScheduleClock, react_rng: np.random.Generator | None = None) -> list[dict[str, Any]]:
    """The request's record, and the record of the user's reaction to it when there was one."""
    kind, user, target, body, event_ids = request
    sent = clock.now()
    rec: dict[str, Any] = {"t": scheduled, "sent": sent, "lag_ms": max(sent - scheduled, 0.0) * 1000, "kind": kind,
                           "user_id": user, "geo": user.split("-", 1)[0]}
    decoded: Any = None
    try:
        status, ctype, raw = await asyncio.wait_for(client.request("POST" if body else "GET", target, body),
                                                    timeout=spec.timeout_s)
        decoded = json.loads(raw) if ctype.startswith("application/json") else None
        rec.update(classify_events(status, decoded, sent_ids=event_ids) if kind == "events"
                   else classify_read(kind, status, decoded))
    except asyncio.TimeoutError:
        rec.update(failed(kind, f"timeout: no answer within {spec.timeout_s:g} s"))
    except Exception as exc:  # noqa: BLE001 - a failed request is a record, never an aborted run
        rec.update(failed(kind, f"{type(exc).__name__}: {exc}"))
    if kind == "events":
        rec["event_ids"] = event_ids
    rec["done"] = clock.now()
    rec["latency_ms"] = (rec["done"] - scheduled) * 1000
    if kind == "homepage" and rec.get("ok") and spec.reactions is not None and react_rng is not None:
        shown = [i.get("item_id") for i in decoded.get("items", []) if isinstance(i, dict)]
        reaction = spec.reactions.react(user, [i for i in shown if isinstance(i, str)], react_rng)
        if reaction:
            batch = json.dumps({"events": reaction}).encode()
            ids = [e["event_id"] for e in reaction]
            follow = await _one(client, spec, ("events", user, "/v1/events", batch, ids), clock.now(), clock)
            follow[0]["reaction"] = True
            follow[0]["bundle_version"] = decoded.get("bundle_version")
            return [rec, *follow]
    return [rec]


async def _worker(spec: LoadSpec, out_path: Path, *, epoch0: float, index: int, of: int,
                  progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Send this worker's share (slots index, index + of, ...) of the schedule; write its records."""
    rng = random.Random(spec.seed * 1000 + index)
    total = int(spec.rate * spec.duration_s)
    host, port = urlparse(spec.base_url).hostname or "127.0.0.1", urlparse(spec.base_url).port or 80
    in_flight: set[asyncio.Task[list[dict[str, Any]]]] = set()
    react_rng = np.random.default_rng(spec.seed * 1000 + index + 500) if spec.reactions is not None else None
    lags: list[float] = []
    sent = overload = failed_n = 0
    last_sent = epoch0
    clock = _ScheduleClock(epoch0)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with open(out_path, "w") as out:
        def write(rec: dict[str, Any]) -> None:
            nonlocal failed_n
            out.write(json.dumps(rec) + "\n")
            failed_n += 0 if rec.get("ok") else 1

        def finished(task: asyncio.Task[list[dict[str, Any]]]) -> None:
            in_flight.discard(task)
            if not task.cancelled():
                for rec in task.result():
                    write(rec)

        cap = math.ceil((spec.max_in_flight or cap_for(spec.rate, spec.timeout_s)) / of)  # this worker's share
        async with LeanClient(host, port, max_connections=cap) as client:
            try:
                for i in range(index, total, of):
                    scheduled = clock.slot(i, spec.rate)
                    delay = scheduled - clock.now()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    request = _request(spec, rng)
                    now = clock.now()
                    last_sent = now
                    lags.append(max(now - scheduled, 0.0) * 1000)
                    if len(in_flight) >= cap:
                        overload += 1
                        write({"t": scheduled, "sent": now, "done": now, "lag_ms": lags[-1], "kind": request[0],
                               "user_id": request[1], "geo": request[1].split("-", 1)[0], "latency_ms": (now - scheduled) * 1000,
                               **failed(request[0], "client-overload: max_in_flight requests already open")})
                        continue
                    sent += 1
                    task = asyncio.create_task(_one(client, spec, request, scheduled, clock, react_rng))
                    in_flight.add(task)
                    task.add_done_callback(finished)
                    if progress and i % max(int(spec.rate), 1) == 0:
                        progress(i, total)
                if in_flight:
                    await asyncio.wait(set(in_flight))
            finally:
                for task in list(in_flight):
                    task.cancel()
    return {"sent": sent, "overload": overload, "failed": failed_n, "lags_ms": lags, "last_sent": last_sent}


def summarize(spec: LoadSpec, parts: Sequence[dict[str, Any]], *, epoch0: float, path: Path) -> dict[str, Any]:
    """Achieved rate (requests sent / the time the schedule took), p99 schedule lag, validity."""
    scheduled = int(spec.rate * spec.duration_s)
    sent = sum(p["sent"] for p in parts)
    lags = sorted(x for p in parts for x in p["lags_ms"])
    span = max(max((p["last_sent"] for p in parts), default=epoch0) - epoch0 + 1.0 / spec.rate, spec.duration_s)
    achieved = sent / span if span > 0 else 0.0
    p99_lag = float(np.percentile(lags, 99)) if lags else None
    short = achieved < (1.0 - MAX_SHORTFALL) * spec.rate
    reasons = [f"the load sent {achieved:.1f} req/s, more than {MAX_SHORTFALL:.0%} below its rate {spec.rate:g} req/s "
               f"(p99 schedule lag {p99_lag or 0:.1f} ms; {sum(p['overload'] for p in parts)} refused as client-overload)"] if short else []
    return {"requests": sum(p["sent"] + p["overload"] for p in parts), "scheduled": scheduled, "sent": sent,
            "failed": sum(p["failed"] for p in parts), "client_overload": sum(p["overload"] for p in parts),
            "rate": spec.rate, "achieved_rate": achieved, "p99_schedule_lag_ms": p99_lag, "valid": not short,
            "invalid_reasons": reasons, "processes": spec.processes, "path": str(path)}


def _merge(parts: Sequence[Path], out_path: Path) -> None:
    records = [line for part in parts if part.exists() for line in part.read_text().splitlines() if line.strip()]
    records.sort(key=lambda line: json.loads(line)["t"])
    out_path.write_text("".join(line + "\n" for line in records))
    for part in parts:
        part.unlink(missing_ok=True)


def _process_worker(spec: LoadSpec, path: str, index: int, conn: Any) -> None:
    _use_uvloop()
    try:
        conn.send("ready")  # imported and ready: the parent sets t0 once every worker is
        epoch0 = float(conn.recv())
        conn.send(asyncio.run(_worker(spec, Path(path), epoch0=epoch0, index=index, of=spec.processes)))
    except BaseException as exc:  # noqa: BLE001 - reported by the parent
        conn.send({"error": f"{type(exc).__name__}: {exc}"})
    finally:
        conn.close()


def _use_uvloop() -> None:
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # the standard loop is slower, not wrong
        pass


START_DELAY_S = 0.2
"""The schedule's t0 is 0.2 s after the last worker process said it was ready (spawned and
imported: seconds on a loaded machine, which must not count as schedule lag)."""
READY_TIMEOUT_S = 60.0
"""A worker that has not started within a minute has failed."""


async def run_load_async(spec: LoadSpec, out_path: Path, *, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Run the load; returns `summarize`'s figures (and writes out_path, sorted by scheduled time)."""
    validate(spec)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if spec.processes == 1:
        epoch0 = time.time()
        part = await _worker(spec, out_path, epoch0=epoch0, index=0, of=1, progress=progress)
        return summarize(spec, [part], epoch0=epoch0, path=out_path)
    paths = [out_path.with_name(f"{out_path.name}.part{i}") for i in range(spec.processes)]
    ctx = multiprocessing.get_context("spawn")  # never fork a process that runs threads (the game day's)
    workers = []
    for i, path in enumerate(paths):
        parent, child = ctx.Pipe(duplex=True)
        proc = ctx.Process(target=_process_worker, args=(spec, str(path), i, child), name=f"load-{i}", daemon=True)
        proc.start()
        child.close()
        workers.append((proc, parent))
    parts = []
    try:
        started = time.monotonic()
        for proc, conn in workers:
            while not conn.poll(0):
                if not proc.is_alive() or time.monotonic() - started > READY_TIMEOUT_S:
                    raise RuntimeError(f"load worker {proc.name} did not start (exit code {proc.exitcode})")
                await asyncio.sleep(0.02)
            ready = conn.recv()
            if ready != "ready":
                raise RuntimeError(f"load worker {proc.name} failed to start: {ready.get('error', ready)}")
        epoch0 = time.time() + START_DELAY_S
        for _, conn in workers:
            conn.send(epoch0)
        for proc, conn in workers:
            while not conn.poll(0):
                if not proc.is_alive() and not conn.poll(0):
                    raise RuntimeError(f"load worker {proc.name} exited with {proc.exitcode} before reporting")
                await asyncio.sleep(0.05)
            part = conn.recv()
            if "error" in part:
                raise RuntimeError(f"load worker {proc.name} failed: {part['error']}")
            parts.append(part)
    finally:  # a cancelled or failed run stops its workers too
        for proc, _ in workers:
            if proc.is_alive():
                proc.terminate()
            proc.join(5)
    _merge(paths, out_path)
    return summarize(spec, parts, epoch0=epoch0, path=out_path)


def run_load(spec: LoadSpec, out_path: Path, *, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    _use_uvloop()
    return asyncio.run(run_load_async(spec, out_path, progress=progress))


def read_records(path: Path) -> list[dict[str, Any]]:
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]
