"""The residency audit finds personal data of users homed elsewhere: planted violations of each kind
(a key, a hash field, a stream entry, a cached slate, a bundle file) make it fail; a real log with
replication and popularity propagation stays clean."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Callable

from regions import redis_keys
from regions.topology import REPO_ROOT
from replication.interaction_log import append_events
from replication.replicating import Replicator, ReplicatorSettings
from replication.residency_audit import audit, bundle_cache_dir, user_id_pattern, user_ids_in
from tests.replication.helpers import Stack, event, paper_topology, stack_factory, topology_toml  # noqa: F401

FAST = ReplicatorSettings(block_ms=0, retry_s=0.05)


def _legit(stack: Stack) -> None:
    c, topo = stack.clients, stack.topology
    append_events(c["us-east"], [event("us-1", seq=i) for i in range(3)], topology=topo, region="us-east")
    append_events(c["eu-west"], [event("eu-1", seq=i) for i in range(3)], topology=topo, region="eu-west")
    for region in topo.regions:
        for _ in range(5):
            Replicator(topology=topo, source=region, clients=c, settings=FAST).step()
    c["us-east"].set(redis_keys.cached_result("us-1"), json.dumps({"item_ids": ["sku-1"]}))
    c["eu-west"].hset(redis_keys.TOMBSTONES, "eu-9", "1")


def test_user_ids_are_tokens_of_known_geographies_not_region_names() -> None:
    topo = paper_topology()
    pattern = user_id_pattern(topo)
    text = 'ckpt:popularity:us-east:log:events user_id=eu-12 "us-7" sku-eu-3 p-ab12 us|mobile|low'
    assert user_ids_in(text, pattern=pattern, topology=topo) == {"eu-12", "us-7"}


def test_a_clean_stack_is_clean_and_each_planted_violation_is_found(stack_factory: Callable[..., Stack], tmp_path: Path) -> None:
    stack = stack_factory()
    _legit(stack)
    c, topo = stack.clients, stack.topology
    state = tmp_path / "state"
    good = bundle_cache_dir(state, "eu-west") / "v1"
    good.mkdir(parents=True)
    (good / "users.json").write_text(json.dumps([{"user_id": "eu-1", "segment": "eu"}]))
    report = audit(topo, c, state_dir=state)
    assert report.clean, report.findings
    assert report.scanned["us-west"]["stream_entries"] == 3  # the replica of us-east's log was scanned
    assert report.scanned["eu-west"]["bundle_files"] == 1

    c["us-east"].hset(redis_keys.user_features("eu-5"), mapping={"updated_at": "1"})             # a key
    c["us-west"].xadd(redis_keys.EVENT_LOG, {"user_id": "eu-6", "item_id": "sku-1"})              # a stream entry
    c["us-east"].set(redis_keys.cached_result("eu-7"), json.dumps({"item_ids": ["sku-1"]}))      # a cached slate
    c["eu-west"].hset(redis_keys.TOMBSTONES, "us-8", "1")                                         # a hash field
    c["eu-west"].set("note", "last seen us-3")                                                    # a value
    bad = bundle_cache_dir(state, "us-east") / "v2"
    bad.mkdir(parents=True)
    (bad / "users.json").write_text(json.dumps([{"user_id": "us-1"}, {"user_id": "eu-4", "segment": "eu"}]))  # a bundle file
    report = audit(topo, c, state_dir=state)
    found = {(f.region, f.kind, f.user_id) for f in report.findings}
    assert found == {
        ("us-east", "key", "eu-5"), ("us-west", "stream_entry", "eu-6"), ("us-east", "key", "eu-7"),
        ("eu-west", "hash_field", "us-8"), ("eu-west", "value", "us-3"), ("us-east", "bundle_file", "eu-4"),
    }
    assert not report.clean and report.total == 6


def test_the_cli_exits_non_zero_with_the_findings_as_json(stack_factory: Callable[..., Stack], tmp_path: Path) -> None:
    stack = stack_factory()
    topo_file = tmp_path / "topology.toml"
    topo_file.write_text(topology_toml(stack.topology))
    argv = [sys.executable, "-m", "regionctl.main", "residency", "audit", "--json", "--topology", str(topo_file),
            "--state-dir", str(tmp_path / "state")]
    clean = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert clean.returncode == 0, clean.stderr
    assert json.loads(clean.stdout)["clean"] is True
    stack.clients["us-east"].xadd(redis_keys.EVENT_LOG, {"user_id": "eu-6", "item_id": "sku-1"})
    dirty = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert dirty.returncode == 1
    doc = json.loads(dirty.stdout)
    assert doc["clean"] is False and doc["findings"][0]["user_id"] == "eu-6" and doc["findings"][0]["region"] == "us-east"


def test_the_last_resort_lists_carry_item_ids_only() -> None:
    """The edge's and the cell's packaged lists go to every geography: no user id may be in them."""
    from edge.last_resort import PACKAGED_LAST_RESORT
    from regions.topology import load_topology

    topo = load_topology()
    for path in (PACKAGED_LAST_RESORT, REPO_ROOT / "serving" / "fallback_popularity.json"):
        text = path.read_text()
        assert len(text) > 100 and user_ids_in(text, pattern=user_id_pattern(topo), topology=topo) == set(), path
    assert user_ids_in('["sku-1", "eu-3"]', pattern=user_id_pattern(topo), topology=topo) == {"eu-3"}  # the check can fail
