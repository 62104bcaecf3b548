"""Chaos Toolkit actions against the local stack (regions.stack): each one injects or removes a fault.

Every action returns a dict with `"at": time.time()` (when the fault took effect; game days measure
RTO from the first method action's `at`) and what it hit (process names and PIDs, URLs, versions).
Failures raise `chaoslib.exceptions.ActivityFailed` with a message that says what to do.

Every injecting action records its fault in the stack's fault registry (chaos.fault_registry)
before injecting it, with the action that removes it; every removing action forgets it. So
`regionctl gameday abort` removes the faults of any run, a bare `chaos run` included.

Configuration keys (all optional; "" means the default):
    state_dir      the stack's state directory (default: regions.stack.default_state_dir())
    topology       topology.toml path (default: the one the stack was started with, recorded in
                   stack.json; else REGIONCTL_TOPOLOGY or the repository's)
    control_store  control store URL (default: the stack's, regions.stack.stack_urls)
    artifacts      artifact store URL (default: the stack's)
Only loopback addresses are ever contacted.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import httpx
from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration, Secrets

from chaos import fault_registry
from chaos.cell_fault_ledger import FAULT_LEDGER, chaos_token, fault_ledger, record_faults  # noqa: F401 (re-exported)
from chaos.context import (
    HTTP_TIMEOUT_S, LEADER_LEASE, REGION_KINDS, StackContext, bundle_files, context_from, local_store, population, process_stopped,
)
from regions import cpu_quota, proc_stat, stack
from regions.errors import ShopNowError

__all__ = [
    "kill_region", "restore_region", "stop_feature_store", "restore_feature_store",
    "publish_corrupt_bundle", "restore_good_bundle", "freeze_index", "unfreeze_index",
    "stop_feature_updater", "restore_feature_updater", "inject_ranking_latency", "clear_ranking_latency",
    "kill_controller_leader", "restore_controllers", "log_events",
    "inject_homepage_errors", "clear_cell_faults", "kill_etcd_leader", "kill_etcd_quorum", "restore_etcd",
    "limit_cell_cpu", "restore_cell_cpu",
    "reprice_items", "restore_item_prices",
    "hang_region", "resume_region", "hang_feature_store", "resume_feature_store", "inject_answer_latency",
    "clear_answer_latency",
]

SETTLE_TIMEOUT_S = 10.0
"""A SIGKILLed process is gone, and a started one has exec'd, within milliseconds; 10 s is a stuck kernel."""
READY_TIMEOUT_S = 60.0
"""A restarted cell loads its bundle before it opens its port; a minute covers the demo bundle."""


@contextlib.contextmanager
def _failing_as_activity(what: str) -> Iterator[None]:
    """Project and OS errors become ActivityFailed, chained to the original."""
    try:
        yield
    except ActivityFailed:
        raise
    except (ShopNowError, OSError, httpx.HTTPError, ValueError) as exc:
        raise ActivityFailed(f"{what} failed: {exc}") from exc


def _register(ctx: StackContext, key: str, *, undo: str, what: str, **arguments: Any) -> None:
    """Record the fault about to be injected (see the module docstring). A region argument is
    checked first: an action refused for bad input injects nothing and leaves nothing registered."""
    with _failing_as_activity(what):
        if "region" in arguments:
            ctx.topology.region(str(arguments["region"]))
        fault_registry.record(ctx.state_dir, key, undo=undo, arguments=arguments, what=what)


def _forget(ctx: StackContext, key: str) -> None:
    with _failing_as_activity("fault registry"):
        fault_registry.forget(ctx.state_dir, key)


def _running_pids(ctx: StackContext, *, region: str = "", kinds: tuple[str, ...] = (), names: tuple[str, ...] = ()) -> dict[str, int]:
    state = stack.StackState.load(ctx.state_dir)
    chosen = stack.select(state, region=region, kinds=kinds, names=names)
    return {p.name: p.pid for p in chosen if stack.is_running(p)}


def _settle_started(ctx: StackContext, names: list[str], *, timeout_s: float = SETTLE_TIMEOUT_S) -> None:
    """Wait until the named processes are running their command (a fresh child execs
    asynchronously). Gives up quietly after `timeout_s`. (`stack.kill` itself waits until the
    killed are gone.)"""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = stack.StackState.load(ctx.state_dir)
        if all(stack.is_running(state.processes[n]) for n in names if n in state.processes):
            return
        time.sleep(0.02)


def _kill(ctx: StackContext, what: str, *, region: str = "", kinds: tuple[str, ...] = (), names: tuple[str, ...] = ()) -> dict[str, Any]:
    with _failing_as_activity(what):
        if region:
            ctx.topology.region(region)
        pids = _running_pids(ctx, region=region, kinds=kinds, names=names)
        if not pids:
            raise ActivityFailed(
                f"{what}: no running process matches (region={region or '*'}, kinds={','.join(kinds) or '*'}) in "
                f"{ctx.state_dir / stack.STACK_FILE}; start the stack with `regionctl up` or fix state_dir"
            )
        at = time.time()  # the fault time: stamped immediately before the first signal
        killed = stack.kill(ctx.state_dir, region=region, kinds=kinds, names=names)
    return {"at": at, "action": what, "region": region, "killed": killed, "pids": pids}


def _restart(ctx: StackContext, what: str, *, region: str = "", kinds: tuple[str, ...] = (), names: tuple[str, ...] = (),
             ready_timeout_s: float = READY_TIMEOUT_S) -> dict[str, Any]:
    with _failing_as_activity(what):
        if region:
            ctx.topology.region(region)
        restarted = stack.restart(ctx.topology, ctx.state_dir, region=region, kinds=kinds, names=names,
                                  ready_timeout_s=ready_timeout_s)
        _settle_started(ctx, restarted)
        pids = _running_pids(ctx, region=region, kinds=kinds, names=names)
    return {"at": time.time(), "action": what, "region": region, "restarted": restarted,
            "pids": {n: pids[n] for n in restarted if n in pids}}


# -- whole region ------------------------------------------------------------------------------
def kill_region(region: str, configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:
    """SIGKILL the region's cell, Redis, replicator and feature updater (a lost data centre)."""
    ctx = context_from(configuration)
    _register(ctx, f"region:{region}", undo="restore_region", what="kill_region", region=region)
    return _kill(ctx, "kill_region", region=region, kinds=REGION_KINDS)


def restore_region(region: str, ready_timeout_s: float = READY_TIMEOUT_S, configuration: Configuration = None,
                   secrets: Secrets = None) -> dict[str, Any]:
    """Start again every process of the region that is not running (Redis first, from its AOF)."""
    ctx = context_from(configuration)
    result = _restart(ctx, "restore_region", region=region, kinds=REGION_KINDS, ready_timeout_s=ready_timeout_s)
    _forget(ctx, f"region:{region}")
    return result


# -- hung processes (SIGSTOP: the kernel still accepts connections, nothing answers) -----------
def _signal_group(ctx: StackContext, what: str, sig: int, *, region: str, kinds: tuple[str, ...]) -> dict[str, Any]:
    """Send `sig` to the process group of every running process of the region of these kinds
    (each stack process leads its own session: children are stopped and continued with it), then
    wait until the kernel says each one is stopped (SIGSTOP) or no longer is (SIGCONT)."""
    with _failing_as_activity(what):
        ctx.topology.region(region)
        pids = _running_pids(ctx, region=region, kinds=kinds)
        if not pids and sig == signal.SIGSTOP:
            raise ActivityFailed(f"{what}: no running process of region {region} (kinds {','.join(kinds)}) in "
                                 f"{ctx.state_dir / stack.STACK_FILE}; start the stack with `regionctl up` or fix state_dir")
        at = time.time()  # the fault time: stamped immediately before the first signal
        sent = []
        for name, pid in sorted(pids.items()):
            try:
                os.killpg(pid, sig)
            except (ProcessLookupError, PermissionError):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    continue
            sent.append(name)
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        stopping = sig == signal.SIGSTOP
        while time.monotonic() < deadline and any(process_stopped(pids[n]) != stopping for n in sent):
            time.sleep(0.01)
        left = [n for n in sent if process_stopped(pids[n]) != stopping]
        if left:
            raise ActivityFailed(f"{what}: {', '.join(left)} did not {'stop' if stopping else 'continue'} within "
                                 f"{SETTLE_TIMEOUT_S:g} s")
    return {"at": at, "action": what, "region": region, "signal": signal.Signals(sig).name, "processes": sent,
            "pids": {n: pids[n] for n in sent}}


def hang_region(region: str, configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:
    """SIGSTOP the region's cell, Redis, replicator and feature updater: every port still accepts
    connections (the kernel's backlog), nothing answers. `resume_region` continues them."""
    ctx = context_from(configuration)
    _register(ctx, f"hang:region:{region}", undo="resume_region", what="hang_region", region=region)
    return _signal_group(ctx, "hang_region", signal.SIGSTOP, region=region, kinds=REGION_KINDS)


def resume_region(region: str, configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:
    """SIGCONT every process of the region (idempotent: a running process ignores it)."""
    ctx = context_from(configuration)
    result = _signal_group(ctx, "resume_region", signal.SIGCONT, region=region, kinds=REGION_KINDS)
    _forget(ctx, f"hang:region:{region}")
    return result


def hang_feature_store(region: str, configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:
    """SIGSTOP the region's Redis alone: connections are accepted, no command is ever answered."""
    ctx = context_from(configuration)
    _register(ctx, f"hang:feature-store:{region}", undo="resume_feature_store", what="hang_feature_store", region=region)
    return _signal_group(ctx, "hang_feature_store", signal.SIGSTOP, region=region, kinds=("redis",))


def resume_feature_store(region: str, configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:
    """SIGCONT the region's Redis (idempotent)."""
    ctx = context_from(configuration)
    result = _signal_group(ctx, "resume_feature_store", signal.SIGCONT, region=region, kinds=("redis",))
    _forget(ctx, f"hang:feature-store:{region}")
    return result


# -- feature store (the region's Redis) ----------------------------------------------------------
def stop_feature_store(region: str, configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:
    """SIGKILL the region's Redis: features, cached results and the interaction log go away."""
    ctx = context_from(configuration)
    _register(ctx, f"feature-store:{region}", undo="restore_feature_store", what="stop_feature_store", region=region)
    return _kill(ctx, "stop_feature_store", region=region, kinds=("redis",))


def restore_feature_store(region: str, ready_timeout_s: float = READY_TIMEOUT_S, configuration: Configuration = None,
                          secrets: Secrets = None) -> dict[str, Any]:
    """Start the region's Redis again (it reloads its AOF)."""
    ctx = context_from(configuration)
    result = _restart(ctx, "restore_feature_store", region=region, kinds=("redis",), ready_timeout_s=ready_timeout_s)
    _forget(ctx, f"feature-store:{region}")
    return result


# -- feature updater (stale features) -------------------------------------------------------------
def stop_feature_updater(region: str, configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:
    """SIGKILL the region's feature updater: user features stop being refreshed."""
    ctx = context_from(configuration)
    _register(ctx, f"feature-updater:{region}", undo="restore_feature_updater", what="stop_feature_updater", region=region)
    return _kill(ctx, "stop_feature_updater", region=region, kinds=("feature-updater",))


def restore_feature_updater(region: str, ready_timeout_s: float = READY_TIMEOUT_S, configuration: Configuration = None,
                            secrets: Secrets = None) -> dict[str, Any]:
    """Start the region's feature updater again (it resumes from its checkpoint)."""
    ctx = context_from(configuration)
    result = _restart(ctx, "restore_feature_updater", region=region, kinds=("feature-updater",), ready_timeout_s=ready_timeout_s)
    _forget(ctx, f"feature-updater:{region}")
    return result


# -- controllers ---------------------------------------------------------------------------------
def kill_controller_leader(configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:
    """SIGKILL the controller that holds the leader lease; the standby must take over."""
    from failover.control_stores import store_from_url

    ctx = context_from(configuration)
    with _failing_as_activity("kill_controller_leader"):
        with store_from_url(ctx.control_store_url) as store:
            lease = store.lease_holder(LEADER_LEASE)
        if lease is None:
            raise ActivityFailed(f"kill_controller_leader: nobody holds lease {LEADER_LEASE!r} in "
                                 f"{ctx.control_store_url}; is a controller running? see `regionctl ps`")
        _register(ctx, "controllers", undo="restore_controllers", what="kill_controller_leader")
        result = _kill(ctx, "kill_controller_leader", names=(lease.holder,))
    return {**result, "leader": lease.holder, "term": lease.term}


def restore_controllers(ready_timeout_s: float = READY_TIMEOUT_S, configuration: Configuration = None,
                        secrets: Secrets = None) -> dict[str, Any]:
    """Start again every controller process of the stack that is not running."""
    ctx = context_from(configuration)
    result = _restart(ctx, "restore_controllers", kinds=("controller",), ready_timeout_s=ready_timeout_s)
    _forget(ctx, "controllers")
    return result


# -- the etcd control store (a stack started with `regionctl up --control-store etcd`) -------------
def _etcd_leader(ctx: StackContext, what: str) -> str:
    from regions.etcd_cluster import leader_of
    from regions.stack_etcd import load_members

    members = load_members(ctx.state_dir)
    if not members:
        raise ActivityFailed(f"{what}: the stack in {ctx.state_dir} does not run on etcd; start it with "
                             "`regionctl up --control-store etcd`")
    running = set(_running_pids(ctx, kinds=("etcd",)))
    return leader_of([m for m in members if m.name in running], timeout_s=SETTLE_TIMEOUT_S).name


def kill_etcd_leader(configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:
    """SIGKILL the etcd member that leads the cluster: the others elect a new leader (about 1-2 s)."""
    ctx = context_from(configuration)
    with _failing_as_activity("kill_etcd_leader"):
        leader = _etcd_leader(ctx, "kill_etcd_leader")
        _register(ctx, "etcd", undo="restore_etcd", what="kill_etcd_leader")
        result = _kill(ctx, "kill_etcd_leader", names=(leader,))
    return {**result, "etcd_leader": leader}


def kill_etcd_quorum(configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:
    """SIGKILL the etcd leader and one more member: 1 of 3 is left, no quorum. The controller must
    stop writing and say so; the edge keeps its last table; cells keep serving."""
    ctx = context_from(configuration)
    with _failing_as_activity("kill_etcd_quorum"):
        leader = _etcd_leader(ctx, "kill_etcd_quorum")
        others = sorted(n for n in _running_pids(ctx, kinds=("etcd",)) if n != leader)
        _register(ctx, "etcd", undo="restore_etcd", what="kill_etcd_quorum")
        result = _kill(ctx, "kill_etcd_quorum", names=(leader, *others[:1]))
    return {**result, "etcd_leader": leader, "left": others[1:]}


def restore_etcd(ready_timeout_s: float = READY_TIMEOUT_S, configuration: Configuration = None,
                 secrets: Secrets = None) -> dict[str, Any]:
    """Start again every etcd member of the stack that is not running (each on its own data)."""
    ctx = context_from(configuration)
    result = _restart(ctx, "restore_etcd", kinds=("etcd",), ready_timeout_s=ready_timeout_s)
    with _failing_as_activity("restore_etcd"):
        stack._wait_etcd_healthy(ctx.state_dir, timeout=ready_timeout_s)
    _forget(ctx, "etcd")
    return result


# -- cell faults (POST/DELETE /admin/faults with the chaos token) -------------------------------
def _cell_faults(ctx: StackContext, what: str, region: str, body: dict[str, Any] | None) -> dict[str, Any]:
    if body is not None:
        _register(ctx, f"cell:{region}", undo="clear_cell_faults", what=what, region=region)
    with _failing_as_activity(what):
        url = ctx.cell_url(region) + "/admin/faults"
        headers = {"Authorization": f"Bearer {chaos_token(ctx.state_dir)}"}
        with httpx.Client(timeout=HTTP_TIMEOUT_S, trust_env=False) as client:
            at = time.time()  # stamped immediately before the call that injects (or clears) the fault
            resp = client.post(url, json=body, headers=headers) if body is not None else client.delete(url, headers=headers)
        if resp.status_code >= 300:
            raise ActivityFailed(f"{what}: {url} answered {resp.status_code}: {resp.text[:200]}")
    try:
        answer: Any = resp.json()
    except ValueError:
        answer = resp.text[:200]
    with _failing_as_activity(what):
        record_faults(ctx.state_dir, region, answer if isinstance(answer, dict) else (body or {}))
    if body is None:
        _forget(ctx, f"cell:{region}")
    return {"at": at, "action": what, "region": region, "url": url, "faults": body or {}, "answer": answer}


def freeze_index(region: str, configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:
    """Freeze the cell's ANN index: new items stop appearing in retrieval (stale index)."""
    return _cell_faults(context_from(configuration), "freeze_index", region,
                        {"ranking_latency_ms": 0.0, "freeze_index": True})


def unfreeze_index(region: str, configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:
    """Clear the cell's faults (DELETE /admin/faults)."""
    return _cell_faults(context_from(configuration), "unfreeze_index", region, None)


def inject_ranking_latency(region: str, latency_ms: float = 300.0, configuration: Configuration = None,
                           secrets: Secrets = None) -> dict[str, Any]:
    """Add `latency_ms` to every ranking call of the cell (slow LightGBM)."""
    if not 0 <= latency_ms <= 10_000:
        raise ActivityFailed(f"inject_ranking_latency: latency_ms must be in [0, 10000], got {latency_ms}")
    return _cell_faults(context_from(configuration), "inject_ranking_latency", region,
                        {"ranking_latency_ms": float(latency_ms), "freeze_index": False})


def clear_ranking_latency(region: str, configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:
    """Clear the cell's faults (DELETE /admin/faults)."""
    return _cell_faults(context_from(configuration), "clear_ranking_latency", region, None)


def inject_answer_latency(region: str, low_ms: float = 300.0, high_ms: float = 800.0, configuration: Configuration = None,
                          secrets: Secrets = None) -> dict[str, Any]:
    """Make every recommendation answer of the cell wait low_ms..high_ms (uniform) before the cell
    works on it, while the cell stays up and its readyz stays fast: a slow region (gray failure)."""
    if not 0 <= low_ms <= high_ms <= 10_000:
        raise ActivityFailed(f"inject_answer_latency: need 0 <= low_ms <= high_ms <= 10000, got {low_ms}, {high_ms}")
    return _cell_faults(context_from(configuration), "inject_answer_latency", region,
                        {"answer_latency_ms": [float(low_ms), float(high_ms)]})


def clear_answer_latency(region: str, configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:
    """Clear the cell's faults (DELETE /admin/faults)."""
    return _cell_faults(context_from(configuration), "clear_answer_latency", region, None)


def inject_homepage_errors(region: str, status: int = 500, configuration: Configuration = None,
                           secrets: Secrets = None) -> dict[str, Any]:
    """Make the cell's HTTP API answer homepages with `status` (404 or 500): a broken release."""
    if status not in (404, 500):
        raise ActivityFailed(f"inject_homepage_errors: status must be 404 or 500, got {status}")
    return _cell_faults(context_from(configuration), "inject_homepage_errors", region, {"homepage_status": int(status)})


def clear_cell_faults(region: str, configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:
    """Clear every fault of the cell (DELETE /admin/faults)."""
    return _cell_faults(context_from(configuration), "clear_cell_faults", region, None)


def log_events(region: str, count: int = 5, configuration: Configuration = None,
               secrets: Secrets = None) -> dict[str, Any]:
    """POST `count` view events of probe users of the region's geography straight to its cell, so
    that a stopped feature updater leaves a visible backlog even without load."""
    if not 1 <= count <= 100:
        raise ActivityFailed(f"log_events: count must be in [1, 100], got {count}")
    ctx = context_from(configuration)
    with _failing_as_activity("log_events"):
        geo = ctx.topology.region(region).geography

        _, items = population(ctx)
        now = time.time()
        events = [{"event_id": uuid.uuid4().hex, "user_id": f"{geo}-probe-{i}", "item_id": items[i % len(items)],
                   "type": "view", "ts": now, "seq": -1} for i in range(count)]
        with httpx.Client(timeout=HTTP_TIMEOUT_S, trust_env=False) as client:
            resp = client.post(ctx.cell_url(region) + "/v1/events", json={"events": events})
        if resp.status_code != 200:
            raise ActivityFailed(f"log_events: {ctx.cell_url(region)}/v1/events answered {resp.status_code}: {resp.text[:200]}")
    return {"at": time.time(), "action": "log_events", "region": region, "count": count}


# -- item feed (feature drift) ------------------------------------------------------------------
MAX_PRICE_FACTOR = 1000.0
"""A units bug multiplies prices by 10, 100 or 1000; more is not a plausible feed fault."""


def _publish_prices(ctx: StackContext, what: str, region: str, factor: float) -> dict[str, Any]:
    """Publish every item of the region's current bundle at `factor` x its catalog price to the
    region's item feed (`log:items`); the region's feature updater applies it to `if:<item>`."""
    from chaos.redis_io import region_client
    from contracts.item_updates import ItemUpdate, publish_item_updates

    with _failing_as_activity(what):
        geo = ctx.topology.region(region).geography
        found = bundle_files(ctx, geo, ("items.json",))
        if found is None:
            raise ActivityFailed(f"{what}: geography {geo} has no current bundle; train and promote one first")
        version, (rows,) = found
        updates = [ItemUpdate(item_id=str(r["item_id"]), price=float(r["price"]) * factor) for r in rows]
        client = region_client(ctx, region)
        try:
            at = time.time()  # stamped immediately before the first update is published
            published = publish_item_updates(client, updates)
        finally:
            client.close()
    return {"at": at, "action": what, "region": region, "factor": factor, "items": published, "bundle_version": version}


def reprice_items(region: str, factor: float = 10.0, configuration: Configuration = None,
                  secrets: Secrets = None) -> dict[str, Any]:
    """Feature drift through the product's own data path: the region's item feed publishes every
    item at `factor` x its catalog price (a units bug upstream), the feature updater writes those
    prices to the live item features, and the cell scores them. factor 1 publishes the true prices
    (no drift: what a must-fail game day uses)."""
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor <= MAX_PRICE_FACTOR:
        raise ActivityFailed(f"reprice_items: factor must be a number in (0, {MAX_PRICE_FACTOR:g}], got {factor!r}")
    ctx = context_from(configuration)
    _register(ctx, f"item-prices:{region}", undo="restore_item_prices", what=f"item prices x{factor:g} in {region}'s item feed",
              region=region)
    return _publish_prices(ctx, "reprice_items", region, float(factor))


def restore_item_prices(region: str, configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:
    """Publish every item's catalog price to the region's item feed again (undoes reprice_items)."""
    ctx = context_from(configuration)
    out = _publish_prices(ctx, "restore_item_prices", region, 1.0)
    _forget(ctx, f"item-prices:{region}")
    return out


# -- model bundles -----------------------------------------------------------------------------
def corrupt_copy(source: Path, dest: Path, *, version: str, file: str = "ranker.txt") -> None:
    """Copy a bundle, flip one byte of `file` and keep its manifest checksums (so it must be refused)."""
    shutil.copytree(source, dest)
    target = dest / file
    data = bytearray(target.read_bytes())
    if not data:
        raise ActivityFailed(f"{file} of {source.name} is empty; nothing to corrupt")
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    manifest = json.loads((dest / "manifest.json").read_text())
    manifest["bundle_version"] = version  # only the name: the checksums still describe the good file
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))


def publish_corrupt_bundle(file: str = "ranker.txt", configuration: Configuration = None,
                           secrets: Secrets = None) -> dict[str, Any]:
    """Place a copy of the current bundle with one byte of `file` flipped as a new version and make
    it current WITHOUT verification (store.promote): cells must refuse it and keep the good one."""
    ctx = context_from(configuration)
    with _failing_as_activity("publish_corrupt_bundle"):
        store = local_store(ctx, "publish_corrupt_bundle")
        _register(ctx, "bundle", undo="restore_good_bundle", what="publish_corrupt_bundle")
        good = store.current()
        if good is None:
            raise ActivityFailed(f"the artifact store {ctx.artifacts_url} has no current bundle; "
                                 "publish and promote one first (`regionctl artifacts promote`)")
        version = f"{good[:100]}-corrupt-{uuid.uuid4().hex[:6]}"
        staging = store.root / "staging" / f"{version}.{uuid.uuid4().hex[:8]}"
        staging.parent.mkdir(parents=True, exist_ok=True)
        try:
            corrupt_copy(store.root / "bundles" / good, staging, version=version, file=file)
            staging.rename(store.root / "bundles" / version)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        store.promote(version)
        at = time.time()
    return {"at": at, "action": "publish_corrupt_bundle", "version": version, "previous": good, "file": file,
            "store": ctx.artifacts_url}


def restore_good_bundle(configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:
    """Make the newest bundle that passes integrity checks current again (idempotent: nothing
    changes when the current bundle is whole)."""
    from replication.verifying import BundleRejected, verify_integrity

    ctx = context_from(configuration)
    with _failing_as_activity("restore_good_bundle"):
        store = local_store(ctx, "restore_good_bundle")
        history = store.history()

        def whole(version: str) -> bool:
            try:
                verify_integrity(store.root / "bundles" / version)
            except (BundleRejected, ShopNowError):
                return False
            return True

        if history.current is None or whole(history.current):
            _forget(ctx, "bundle")
            return {"at": time.time(), "action": "restore_good_bundle", "from": history.current,
                    "to": history.current, "changed": False}
        good = next((v for v in reversed(history.previous) if whole(v)), None)
        if good is None:
            raise ActivityFailed("no earlier bundle in the pointer history passes its checksums; "
                                 "publish a good bundle and promote it")
        store.promote(good)
        _forget(ctx, "bundle")
    return {"at": time.time(), "action": "restore_good_bundle", "from": history.current, "to": good, "changed": True}


# -- survivor size (overload at N-1) ---------------------------------------------------------------
def _quota_group(region: str) -> str:
    return f"cell-{region}"


def limit_cell_cpu(region: str, cores: float = 0.5, configuration: Configuration = None,
                   secrets: Secrets = None) -> dict[str, Any]:
    """Give the region's cell `cores` of CPU, capped and guaranteed (regions.cpu_quota, a cgroup;
    needs root): the survivor's size, so that its lost peer's traffic is beyond its capacity. The
    output holds the cell's CPU seconds so far by pid (`cpu_s`), as restore_cell_cpu's does at the
    end: what the survivor really used meanwhile (chaos.overload.survivor_cpu)."""
    ctx = context_from(configuration)
    _register(ctx, f"cpu:{region}", undo="restore_cell_cpu", what="limit_cell_cpu", region=region)
    with _failing_as_activity("limit_cell_cpu"):
        pids = _running_pids(ctx, region=region, kinds=("cell",))
        if not pids:
            raise ActivityFailed(f"limit_cell_cpu: {region}'s cell is not running in {ctx.state_dir / stack.STACK_FILE}")
        at = time.time()
        quota = cpu_quota.limit_cpu(_quota_group(region), pids.values(), cores=cores)
        used = proc_stat.cpu_seconds(quota.pids)
    return {"at": at, "action": "limit_cell_cpu", "region": region, "cores": quota.cores, "pids": pids,
            "group": str(quota.path), "cpu_s": used}


def restore_cell_cpu(region: str, configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:
    """Remove the CPU quota of the region's cell (idempotent); its output has the seconds the quota
    held the cell back (`throttled_s`) and the CPU seconds each released process has used (`cpu_s`)."""
    ctx = context_from(configuration)
    with _failing_as_activity("restore_cell_cpu"):
        ctx.topology.region(region)
        throttled = cpu_quota.throttled_s(_quota_group(region))
        moved = cpu_quota.release_cpu(_quota_group(region))
        at, used = time.time(), proc_stat.cpu_seconds(moved)
    _forget(ctx, f"cpu:{region}")
    return {"at": at, "action": "restore_cell_cpu", "region": region, "released": moved,
            "throttled_s": throttled, "cpu_s": used}
