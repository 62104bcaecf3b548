"""A geography's bundle is trained from its own users' events only, and without its deleted users."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np

from regions import redis_keys
from regions.topology import load_topology
from regionctl.geo_bundles import train_geographies
from replication.erasure_deadline import TOMBSTONES_READ_AT
from serving import marketplace
from serving.geo_training import dataset_of_geography
from tests.replication.helpers import Stack, stack_factory  # noqa: F401

DATA = marketplace.generate_named("tiny", seed=3, geographies={"us": 0.6, "eu": 0.4})


def test_a_geography_keeps_its_users_and_only_their_events() -> None:
    topo = load_topology()
    gone = next(u.user_id for u in DATA.users if u.geo == "eu")
    eu = dataset_of_geography(DATA, "eu", topology=topo, exclude_users={gone})
    assert eu.users and all(u.geo == "eu" for u in eu.users) and gone not in {u.user_id for u in eu.users}
    assert len(eu.events) > 0 and int(eu.events.user.max()) < len(eu.users)
    original = {(DATA.users[int(u)].user_id, int(i), float(t)) for u, i, t in zip(DATA.events.user, DATA.events.item, DATA.events.ts)
                if DATA.users[int(u)].geo == "eu" and DATA.users[int(u)].user_id != gone}
    kept = {(eu.users[int(u)].user_id, int(i), float(t)) for u, i, t in zip(eu.events.user, eu.events.item, eu.events.ts)}
    assert kept == original
    assert len(eu.items) == len(DATA.items) and np.all(np.diff(eu.events.ts) >= 0)


def test_training_excludes_the_geographys_tombstoned_users(stack_factory: Callable[..., Stack], tmp_path: Path) -> None:
    stack = stack_factory()
    eu_users = [u.user_id for u in DATA.users if u.geo == "eu"]
    stack.clients["eu-west"].hset(redis_keys.TOMBSTONES, mapping={eu_users[0]: "1.0", eu_users[1]: "2.0"})
    now = time.time()
    (result,) = train_geographies(DATA, stack.topology, out_root=tmp_path, now=now, bundle_version="20260101T000000Z-aaaa0001",
                                  geographies=("eu",)).values()
    users = {u["user_id"] for u in json.loads((result.bundle_dir / "users.json").read_text())}
    assert users and all(u.startswith("eu-") for u in users) and not users & set(eu_users[:2])
    metrics = result.manifest.metrics
    assert metrics["geography"] == "eu" and metrics["excluded_deleted_users"] == 2 and metrics[TOMBSTONES_READ_AT] == now
    stack.procs["eu-west"].kill()
    (blind,) = train_geographies(DATA, stack.topology, out_root=tmp_path / "again", now=now,
                                 bundle_version="20260101T000000Z-aaaa0002", geographies=("eu",)).values()
    assert blind.manifest.metrics[TOMBSTONES_READ_AT] == 0.0  # could not read: marked as not honouring deletions
