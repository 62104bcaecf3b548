"""A cell personalises only its own geography's live users: a user homed elsewhere, or deleted, is
answered anonymously (serving geography's segment, then popularity), counted, never with their
features, embedding or cached slate; a tombstoned user's slate is never cached (checked in Redis)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator, Sequence

import pytest
import redis

from contracts.impressions import Impression
from regions import redis_keys
from regions.processes import ManagedProcess
from regions.topology import load_topology
from serving.bundle import LoadedBundle
from serving.feature_store import CachedSlate, FeatureStore, FeatureStoreSettings
from serving.metrics import CellMetrics
from serving.recommender import Recommender, Serving
from serving.residency import DELETED_USER, FOREIGN_USER, TombstoneView, personalisation_refusal
from serving.user_state import UserState

TOPOLOGY = load_topology()
ROOMY = FeatureStoreSettings(connect_timeout_s=2.0, read_timeout_s=2.0)
SLATE = CachedSlate(item_ids=("sku-1",), scores=(1.0,), bundle_version="v", tier="full", created_at=1.0)


def test_refusal_reasons() -> None:
    def refusal(region: str, user: str, tombstones: frozenset[str] = frozenset()) -> str:
        return personalisation_refusal(TOPOLOGY, region=region, user_id=user, geography="", tombstones=tombstones)

    assert refusal("us-east", "us-1") == ""
    assert refusal("us-east", "eu-1") == FOREIGN_USER
    assert refusal("eu-west", "us-1") == FOREIGN_USER
    assert refusal("eu-west", "eu-1", frozenset({"eu-1"})) == DELETED_USER
    assert personalisation_refusal(TOPOLOGY, region="us-east", user_id="x", geography="eu", tombstones=frozenset()) == FOREIGN_USER


@pytest.fixture
def client(redis_server: tuple[ManagedProcess, int]) -> Iterator[redis.Redis]:
    c = redis.Redis(port=redis_server[1], decode_responses=True)
    yield c
    c.close()


def _store(client: redis.Redis, region: str = "us-east") -> FeatureStore:
    return FeatureStore(client, region=region, topology=TOPOLOGY, settings=ROOMY)


def test_no_slate_is_cached_for_a_tombstoned_user(client: redis.Redis) -> None:
    store = _store(client)
    assert store.put_cached_slate("us-1", SLATE, ttl_s=60) is True
    client.hset(redis_keys.TOMBSTONES, "us-2", "1")
    assert store.put_cached_slate("us-2", SLATE, ttl_s=60) is False
    assert client.exists(redis_keys.cached_result("us-2")) == 0
    assert client.pttl(redis_keys.cached_result("us-1")) > 0


def test_a_batch_of_slates_skips_the_tombstoned_user_and_writes_the_others(client: redis.Redis) -> None:
    store = _store(client)
    client.hset(redis_keys.TOMBSTONES, "us-5", "1")
    users = ("us-4", "us-5", "us-6")
    assert store.put_cached_slates([(u, SLATE) for u in users], ttl_s=60) == 2
    assert [client.exists(redis_keys.cached_result(u)) for u in users] == [1, 0, 1]


class _Spy(FeatureStore):
    """The real store, recording which users' personal keys were read or written."""

    touched: list[str]

    def get_user_state(self, user_id: str) -> UserState | None:
        self.touched.append(user_id)
        return super().get_user_state(user_id)

    def get_user_context(self, user_id: str, *, kinds: Sequence[str]) -> tuple[UserState | None, dict[str, float]]:
        self.touched.append(user_id)
        return super().get_user_context(user_id, kinds=kinds)

    def get_cached_slate(self, user_id: str) -> CachedSlate | None:
        self.touched.append(user_id)
        return super().get_cached_slate(user_id)


def test_foreign_and_deleted_users_are_answered_anonymously_and_counted(client: redis.Redis, tiny_bundle: Path) -> None:
    bundle = LoadedBundle.load(tiny_bundle, version="tiny")
    serving = Serving.of(bundle)
    store = _Spy(client, region="us-east", topology=TOPOLOGY, settings=ROOMY)
    store.touched = []
    tombstones = TombstoneView(client)
    metrics = CellMetrics()
    shown: list[Impression] = []
    rec = Recommender(region="us-east", topology=TOPOLOGY, store=store, serving=lambda: serving,
                      tombstones=lambda: tombstones.users,
                      on_anonymous=lambda reason: metrics.anonymous_answers.labels(reason=reason).inc(),
                      record_impressions=shown.extend)
    eu_user = next(u for u in bundle.user_row if u.startswith("eu-"))
    us_user = next(u for u in bundle.user_row if u.startswith("us-"))
    segment = [i for i in bundle.item_ids(bundle.segment_list(bundle.segment_of({"geo": "us"})))][:8]

    answer = rec.homepage(user_id=eu_user, count=8, deadline_s=5.0)
    assert answer.tier == "segment" and len(answer.items) == 8
    assert [i.item_id for i in answer.items] != [] and set(i.item_id for i in answer.items) <= set(segment) | set(serving.popularity)
    assert eu_user not in store.touched
    assert metrics.anonymous_answers.labels(reason=FOREIGN_USER)._value.get() == 1

    assert rec.homepage(user_id=us_user, count=8, deadline_s=5.0).tier == "full"
    assert rec.homepage(user_id="us-probe", count=8, deadline_s=5.0).items  # the controller's probe: never an impression
    client.hset(redis_keys.TOMBSTONES, us_user, repr(time.time()))
    tombstones.refresh()
    client.delete(redis_keys.cached_result(us_user))
    store.touched.clear()
    answer = rec.homepage(user_id=us_user, count=8, deadline_s=5.0)
    assert answer.tier == "segment" and us_user not in store.touched
    assert metrics.anonymous_answers.labels(reason=DELETED_USER)._value.get() == 1
    rec.close()  # writes the slates (and impressions) still pending
    assert client.exists(redis_keys.cached_result(us_user)) == 0
    # only the answer the us user got while resident and alive is an impression: never the anonymous ones
    assert [(i.user_id, i.tier, i.bundle_version, i.region) for i in shown] == [(us_user, "full", "tiny", "us-east")]
    assert len(shown[0].items) == 8
