"""`POST /v1/users/{id}/delete` on the control API: the user's features, cached slates and log
entries go from every region of their geography (real redis-servers), a tombstone stays, the other
geography is untouched, the journal records a hash of the id (never the id), and auth and input
checks hold. The cells are the stand-ins of controller_helpers; the Redis servers are real."""
from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any, Callable

import redis

from failover.journal import Action
from regions.processes import ManagedProcess
from tests.failover.test_control_api import Api, api  # noqa: F401  (fixture)


def _seed(client: redis.Redis, user: str) -> None:
    client.hset(f"uf:{user}", mapping={"recent_items": "[]", "updated_at": "1"})
    client.set(f"cache:{user}", "{}")
    client.xadd("log:events", {"user_id": user, "item_id": "sku-1", "type": "view", "ts": "1", "event_id": "e1", "geo": user[:2]})


def test_delete_user_everywhere_in_the_geography(api: Api, redis_factory: Callable[..., tuple[ManagedProcess, int]]) -> None:  # noqa: F811
    topo = api.controller.topology
    clients = {}
    for name, region in topo.regions.items():
        redis_factory(name, port=region.redis_port)
        clients[name] = redis.Redis(port=region.redis_port, decode_responses=True)
    us_regions = [r.name for r in topo.regions_in("us")]
    for name in us_regions:
        _seed(clients[name], "us-77")
    eu = topo.regions_in("eu")[0].name
    _seed(clients[eu], "eu-77")

    denied = api.call("POST", "/v1/users/us-77/delete", role="viewer", json={"reason": "GDPR request 1"})
    assert denied.status_code == 403
    missing = api.call("POST", "/v1/users/us-77/delete", json={"reason": " "})
    assert missing.status_code == 422 and missing.json()["error"]["field"] == "reason"
    assert clients[us_regions[0]].exists("uf:us-77")

    resp = api.call("POST", "/v1/users/us-77/delete", json={"reason": "GDPR request 1"})
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    assert body["complete"] and body["geography"] == "us"
    assert sorted(r["region"] for r in body["regions"]) == sorted(us_regions)
    for name in us_regions:
        c = clients[name]
        assert not c.exists("uf:us-77") and not c.exists("cache:us-77")
        assert not any(f.get("user_id") == "us-77" for _, f in c.xrange("log:events"))
        assert c.hexists("users:deleted", "us-77")
    assert clients[eu].exists("uf:eu-77") and clients[eu].xlen("log:events") == 1
    entry = [e for e in api.controller.journal.entries() if e.action == Action.NOTE.value or str(e.action) == Action.NOTE.value][-1]
    text = repr(entry)
    assert "us-77" not in text.replace(hashlib.sha256(b"us-77").hexdigest(), "")
    assert hashlib.sha256(b"us-77").hexdigest() in text
    assert time.time() - body["deleted_at"] < 60


def test_delete_user_removes_archive_entries_with_the_retention_key(
        api: Api, redis_factory: Callable[..., tuple[ManagedProcess, int]], tmp_path: Path) -> None:  # noqa: F811
    """The control API given the retention key finds the user's pseudonymised `log:archive` entries;
    the same API without it leaves them and says so under `remains`."""
    from fastapi.testclient import TestClient

    from failover.auth import TokenBook, parse_tokens
    from failover.control_api import create_app
    from failover.drill_runner import DrillRunner
    from replication.retention import ARCHIVE_LOG, RetentionSettings, run_retention
    from tests.failover.test_control_api import BEARER, TOKENS

    key = b"control-api-retention-key"
    topo = api.controller.topology
    clients = {}
    for name, region in topo.regions.items():
        redis_factory(name, port=region.redis_port)
        clients[name] = redis.Redis(port=region.redis_port)
    us_regions = [r.name for r in topo.regions_in("us")]
    for name in us_regions:
        _seed(clients[name], "us-77")
        _seed(clients[name], "us-78")
    run_retention(topo, clients, 4_000_000_000.0, settings=RetentionSettings(mode="pseudonymise"), key=key)
    assert all(clients[n].xlen(ARCHIVE_LOG) == 2 for n in us_regions)
    director = {"Authorization": f"Bearer {BEARER['director']}"}

    without = api.call("POST", "/v1/users/us-77/delete", json={"reason": "GDPR request 2"}).json()
    assert all(any("pseudonymised entries could not be searched" in m for m in r["remains"]) for r in without["regions"])
    assert all(clients[n].xlen(ARCHIVE_LOG) == 2 for n in us_regions)

    app = create_app(controller=api.controller, tokens=TokenBook(parse_tokens(TOKENS)),
                     drills=DrillRunner(api.controller, reports_dir=tmp_path / "drills"), retention_key=key)
    with TestClient(app) as client:
        resp = client.post("/v1/users/us-77/delete", headers=director, json={"reason": "GDPR request 2"})
    assert resp.status_code == 200, resp.text
    for row in resp.json()["regions"]:
        assert row["log_entries_removed"] == {ARCHIVE_LOG: 1} and row["remains"] == []
    assert all(clients[n].xlen(ARCHIVE_LOG) == 1 for n in us_regions)  # us-78's entry stays
