"""Geo-pinned replication with real redis-servers: same ids, idempotent, resumable, never across geographies."""
from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Callable

import pytest
import redis
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from regions import redis_keys
from regions.processes import spawn, wait_until
from contracts.events import EVENT_WEIGHTS
from replication.interaction_log import append_events, stream_last_id
from replication.lag import ZERO
from replication.metrics import ReplicationMetrics, replication_status, unreplicated_geographies
from replication.replicating import Replicator, ReplicatorSettings, StepResult
from serving.feature_updater import FeatureUpdater, UpdaterSettings
from tests.replication.helpers import TWO_PLUS_TWO, US_EU, Stack, event, stack_factory, stream_ids, topology_toml  # noqa: F401

FAST = ReplicatorSettings(block_ms=0, retry_s=0.05)


def drain(replicator: Replicator, *, max_steps: int = 200) -> list[StepResult]:
    """Step until a step reads nothing and no target is unreachable."""
    results = []
    for _ in range(max_steps):
        result = replicator.step()
        results.append(result)
        if result.read == 0 and not result.unreachable:
            return results
    raise AssertionError(f"replicator did not drain in {max_steps} steps: {results[-3:]}")


def append_many(stack: Stack, region: str, users: list[str], n: int, *, batch: int = 100, etype: str = "view") -> list[str]:
    ids: list[str] = []
    for start in range(0, n, batch):
        events = [event(users[i % len(users)], f"item-{i % 13}", seq=i, etype=etype) for i in range(start, min(n, start + batch))]
        ids += append_events(stack.clients[region], events, topology=stack.topology, region=region)
    return ids


def test_each_source_is_copied_with_the_same_ids_to_its_same_geography_peers_only(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory(US_EU)
    c = stack.clients
    east = append_many(stack, "us-east", ["us-1", "us-2"], 1234)
    west = append_many(stack, "us-west", ["us-3"], 77)
    eu = append_many(stack, "eu-west", ["eu-1"], 55)
    for region in US_EU:
        drain(Replicator(topology=stack.topology, source=region, clients=c, settings=FAST))
    assert stream_ids(c["us-west"], redis_keys.replica_log("us-east")) == east
    assert stream_ids(c["us-east"], redis_keys.replica_log("us-west")) == west
    assert stream_ids(c["eu-west"], redis_keys.EVENT_LOG) == eu
    assert sorted(k.decode() for k in c["eu-west"].scan_iter("log:replica:*")) == []
    for region in ("us-east", "us-west"):
        assert c[region].exists(redis_keys.replica_log("eu-west")) == 0


def test_redelivery_is_idempotent_and_checkpoints_live_in_the_destination(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory(US_EU)
    ids = append_many(stack, "us-east", ["us-1"], 600)
    first = Replicator(topology=stack.topology, source="us-east", clients=stack.clients, settings=FAST)
    drain(first)
    # A restarted replicator resumes from the replica stream's own last id: nothing to copy.
    again = Replicator(topology=stack.topology, source="us-east", clients=stack.clients, settings=FAST)
    assert sum(r.copied.get("us-west", 0) for r in drain(again)) == 0
    # Even told the destination has nothing (a lost reply), Redis refuses the old ids: no duplicate.
    again._targets["us-west"].position = ZERO
    assert sum(r.copied.get("us-west", 0) for r in drain(again)) == 0
    assert stream_ids(stack.clients["us-west"], redis_keys.replica_log("us-east")) == ids


def test_poison_goes_to_the_dead_letter_stream_and_never_blocks(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory(US_EU)
    east = stack.clients["us-east"]
    good = append_many(stack, "us-east", ["us-1"], 3)
    bad = [
        east.xadd(redis_keys.EVENT_LOG, {"garbage": "x"}).decode(),
        east.xadd(redis_keys.EVENT_LOG, {**event("us-1").to_fields(), "type": "hover"}).decode(),
        east.xadd(redis_keys.EVENT_LOG, event("eu-9").to_fields()).decode(),  # misplaced personal data
    ]
    good += append_many(stack, "us-east", ["us-2"], 2)
    tail = east.xadd(redis_keys.EVENT_LOG, {"ts": "not a number"}).decode()  # poison at the very end
    metrics = ReplicationMetrics(CollectorRegistry())
    results = drain(Replicator(topology=stack.topology, source="us-east", clients=stack.clients, settings=FAST, metrics=metrics))
    assert sum(r.poison for r in results) == 4
    assert stream_ids(stack.clients["us-west"], redis_keys.replica_log("us-east")) == good
    dead = east.xrange(redis_keys.DEAD_LETTER)
    assert [f[b"entry_id"].decode() for _, f in dead] == [*bad, tail]
    assert all(f[b"reason"] for _, f in dead)
    assert metrics.dead_letters.labels(region="us-east", consumer="replicator")._value.get() == 4
    # The checkpoint moved past the poison tail: the pair reports caught up, no phantom lag.
    assert stream_last_id(stack.clients["us-west"], redis_keys.replica_log("us-east")) == tail
    (pair,) = [p for p in replication_status(stack.topology, stack.clients, time.time()) if p.source == "us-east"]
    assert pair.caught_up and pair.lag_seconds == 0.0


@pytest.mark.parametrize("where", ["us-east", "us-west"])
def test_tombstoned_users_are_not_replicated(stack_factory: Callable[..., Stack], where: str) -> None:
    stack = stack_factory(US_EU)
    kept = append_many(stack, "us-east", ["us-stay"], 3)
    append_many(stack, "us-east", ["us-gone"], 4)
    stack.clients[where].hset(redis_keys.TOMBSTONES, "us-gone", "1.0")  # deleted after acknowledging, before copying
    results = drain(Replicator(topology=stack.topology, source="us-east", clients=stack.clients, settings=FAST))
    assert sum(r.skipped_tombstoned for r in results) == 4
    replica = stack.clients["us-west"].xrange(redis_keys.replica_log("us-east"))
    assert [i.decode() for i, _ in replica] == kept
    assert all(f[b"user_id"] == b"us-stay" for _, f in replica)


def test_anonymous_popularity_reaches_every_region_exactly_once(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory(US_EU)
    append_many(stack, "us-east", ["us-1"], 130, etype="cart")
    append_many(stack, "eu-west", ["eu-1"], 26, etype="purchase")
    append_many(stack, "us-west", ["us-2"], 50, etype="impression")
    for region in US_EU:
        drain(Replicator(topology=stack.topology, source=region, clients=stack.clients, settings=FAST))
        drain(Replicator(topology=stack.topology, source=region, clients=stack.clients, settings=FAST))  # a restart
    # 130 carts over 13 items = 10 carts x 3 each; 26 purchases = 2 x 5 each; impressions weigh 0.
    expected = 10 * EVENT_WEIGHTS["cart"] + 2 * EVENT_WEIGHTS["purchase"]
    for region in US_EU:
        scores = dict(stack.clients[region].zrange(redis_keys.ITEM_POPULARITY, 0, -1, withscores=True))
        assert scores == {f"item-{i}".encode(): expected for i in range(13)}


def _dump(client: redis.Redis) -> str:
    """Every key and every value of a Redis, as text."""
    parts: list[str] = []
    for key in client.scan_iter(count=1000):
        parts.append(repr(key))
        kind = client.type(key).decode()
        if kind == "stream":
            parts += [repr(entry) for entry in client.xrange(key)]
        elif kind == "hash":
            parts.append(repr(client.hgetall(key)))
        elif kind == "zset":
            parts.append(repr(client.zrange(key, 0, -1, withscores=True)))
        elif kind == "string":
            parts.append(repr(client.get(key)))
        else:
            parts.append(repr((kind, client.dump(key))))
    return "\n".join(parts)


def test_eu_personal_data_never_reaches_a_us_redis_through_a_busy_stack(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory(US_EU)
    stop = threading.Event()
    workers = [threading.Thread(target=Replicator(topology=stack.topology, source=r, clients=stack.clients,
                                                  settings=ReplicatorSettings(block_ms=20, retry_s=0.05)).run, args=(stop.is_set,))
               for r in US_EU]
    workers += [threading.Thread(target=FeatureUpdater(topology=stack.topology, region=r, client=stack.clients[r],
                                                       settings=UpdaterSettings(block_ms=20)).run, args=(stop.is_set,))
                for r in US_EU]
    for w in workers:
        w.start()
    eu_users = [f"eu-u{i}" for i in range(10)]
    try:
        for round_ in range(10):
            append_many(stack, "eu-west", eu_users, 200, batch=50)
            append_many(stack, "us-east", [f"us-u{i}" for i in range(5)], 100, batch=50)
            append_many(stack, "us-west", [f"us-v{i}" for i in range(5)], 100, batch=50)
        wait_until(lambda: all(p.caught_up for p in replication_status(stack.topology, stack.clients, time.time())),
                   timeout=60, what="replication caught up")
        wait_until(lambda: stack.clients["us-west"].zscore(redis_keys.ITEM_POPULARITY, "item-0") is not None
                   and stack.clients["us-west"].get("ckpt:popularity:eu-west:log:events") == stream_last_id(stack.clients["eu-west"], redis_keys.EVENT_LOG).encode(),
                   timeout=60, what="eu popularity in us-west")
    finally:
        stop.set()
        for w in workers:
            w.join(timeout=30)
    assert stack.clients["eu-west"].exists(*(redis_keys.user_features(u) for u in eu_users)) == len(eu_users)
    for region in ("us-east", "us-west"):
        dump = _dump(stack.clients[region])
        assert "us-u0" in dump or "us-v0" in dump  # the dump does see personal data when it is there
        leaked = [u for u in eu_users if u in dump] + (["s-eu-"] if "s-eu-" in dump else [])
        assert leaked == [], f"{region} holds EU personal data: {leaked}"


def test_a_peer_outage_backlog_is_drained_in_bounded_batches(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory(US_EU)
    replicator = Replicator(topology=stack.topology, source="us-east", clients=stack.clients, settings=FAST)
    before = append_many(stack, "us-east", ["us-1"], 100)
    drain(replicator)
    stack.procs["us-west"].kill()
    backlog = append_many(stack, "us-east", ["us-1", "us-2"], 1700)
    outage = [replicator.step() for _ in range(5)]
    assert all("us-west" in r.unreachable for r in outage)
    # Popularity kept flowing to the live regions while the peer was down.
    assert stack.clients["eu-west"].get("ckpt:popularity:us-east:log:events").decode() == backlog[-1]
    stack.restart("us-west")
    results = [replicator.step()]
    results += drain(replicator)
    assert max(r.read for r in results) <= FAST.batch_size
    assert sum(r.copied.get("us-west", 0) for r in results) == len(backlog)
    assert stream_ids(stack.clients["us-west"], redis_keys.replica_log("us-east")) == before + backlog


def test_kill_9_of_a_destination_mid_stream_loses_and_duplicates_nothing(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory(US_EU)
    stop = threading.Event()
    replicator = Replicator(topology=stack.topology, source="us-east", clients=stack.clients,
                            settings=ReplicatorSettings(block_ms=20, retry_s=0.05, batch_size=64))
    worker = threading.Thread(target=replicator.run, args=(stop.is_set,))
    worker.start()
    replica = redis_keys.replica_log("us-east")
    try:
        acked = append_many(stack, "us-east", ["us-1", "us-2", "us-3"], 1500, batch=50)
        wait_until(lambda: stack.clients["us-west"].xlen(replica) > 0, timeout=30, what="first copies")
        stack.procs["us-west"].kill()
        acked += append_many(stack, "us-east", ["us-1", "us-2", "us-3"], 1500, batch=50)
        stack.restart("us-west")
        acked += append_many(stack, "us-east", ["us-4"], 500, batch=50)
        wait_until(lambda: stream_last_id(stack.clients["us-west"], replica) == acked[-1], timeout=60, what="catch-up")
    finally:
        stop.set()
        worker.join(timeout=30)
    copied = stream_ids(stack.clients["us-west"], replica)
    assert len(copied) == len(set(copied)) == len(acked)
    assert copied == acked


def test_kill_9_of_the_replicator_process_and_restart_loses_and_duplicates_nothing(stack_factory: Callable[..., Stack], tmp_path: Path) -> None:
    stack = stack_factory(US_EU)
    topo_file = tmp_path / "topology.toml"
    topo_file.write_text(topology_toml(stack.topology))
    argv = [sys.executable, "-m", "regionctl.worker_main", "replicate", "--region", "us-east", "--topology", str(topo_file), "--batch", "50"]
    repo = Path(__file__).resolve().parents[2]
    replica = redis_keys.replica_log("us-east")
    proc = spawn("replicator-1", argv, log_dir=tmp_path, cwd=repo)
    try:
        acked = append_many(stack, "us-east", ["us-1", "us-2"], 2000, batch=100)
        wait_until(lambda: stack.clients["us-west"].xlen(replica) >= 100 or not proc.alive(), timeout=60, what="first copies")
        assert proc.alive(), proc.log_tail()
        proc.kill()
        acked += append_many(stack, "us-east", ["us-1", "us-3"], 1000, batch=100)
        proc = spawn("replicator-2", argv, log_dir=tmp_path, cwd=repo)
        wait_until(lambda: stream_last_id(stack.clients["us-west"], replica) == acked[-1] or not proc.alive(),
                   timeout=60, what="catch-up after the restart")
        assert proc.alive(), proc.log_tail()
    finally:
        proc.stop()
    copied = stream_ids(stack.clients["us-west"], replica)
    assert len(copied) == len(set(copied)) == len(acked)
    assert copied == acked


def test_two_regions_per_geography_replicate_the_same_way(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory(TWO_PLUS_TWO)
    logs = {r: append_many(stack, r, [f"{g}-{r}"], 120) for r, g in TWO_PLUS_TWO.items()}
    before = replication_status(stack.topology, stack.clients, time.time())
    assert {(p.source, p.destination) for p in before} == {
        ("us-east", "us-west"), ("us-west", "us-east"), ("eu-west", "eu-central"), ("eu-central", "eu-west")}
    assert all(p.lag_events == 120 and p.lag_seconds is not None and p.lag_seconds >= 0 for p in before)
    for region in TWO_PLUS_TWO:
        drain(Replicator(topology=stack.topology, source=region, clients=stack.clients, settings=FAST))
    for p in replication_status(stack.topology, stack.clients, time.time()):
        assert p.caught_up and p.lag_seconds == 0.0
        assert stream_ids(stack.clients[p.destination], redis_keys.replica_log(p.source)) == logs[p.source]
    assert unreplicated_geographies(stack.topology) == ()


def test_status_reports_lag_and_says_plainly_when_a_geography_has_no_copy(stack_factory: Callable[..., Stack], tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import typer

    from regionctl.replication_cmds import register

    stack = stack_factory(US_EU)
    append_many(stack, "us-east", ["us-1"], 10)
    metrics = ReplicationMetrics(registry := CollectorRegistry())
    metrics.observe(replication_status(stack.topology, stack.clients, time.time()))
    assert registry.get_sample_value("shopnow_replication_lag_events", {"source": "us-east", "destination": "us-west"}) == 10
    topo_file = tmp_path / "t.toml"
    topo_file.write_text(topology_toml(stack.topology))
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, ["replication", "status", "--topology", str(topo_file)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "behind" in result.output
    assert "Geography 'eu' has a single region (eu-west)" in result.output
    assert "RPO unbounded" in result.output
    assert unreplicated_geographies(stack.topology) == ("eu",)
