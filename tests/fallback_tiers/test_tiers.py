"""Tier order, skip reasons, requests, and the Prometheus counters."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from fallback_tiers.tiers import (
    MAX_COUNT, DependencyFailed, ScoredItem, SkipReason, Tier, TierCounters, TierOutput, TierRequest, min_items,
    record_tiers,
)
from regions.errors import InputError, TemporaryError


@pytest.mark.parametrize(
    ("tier", "rank", "needs_user", "is_floor"),
    [
        (Tier.FULL, 0, True, False),
        (Tier.CACHED, 1, True, False),
        (Tier.SEGMENT, 2, True, False),
        (Tier.POPULARITY, 3, False, True),
    ],
)
def test_tier_table(tier: Tier, rank: int, needs_user: bool, is_floor: bool) -> None:
    assert tier.rank == rank
    assert Tier.ladder()[rank] is tier
    assert tier.needs_user is needs_user
    assert tier.is_floor is is_floor


def test_ladder_covers_every_tier_once_in_rank_order() -> None:
    assert sorted(Tier.ladder(), key=lambda t: t.rank) == list(Tier.ladder())
    assert set(Tier.ladder()) == set(Tier)


@pytest.mark.parametrize("tier", list(Tier))
def test_parse_accepts_the_answer_names(tier: Tier) -> None:
    assert Tier.parse(tier.value) is tier
    assert Tier.parse(f" {tier.value.upper()} ") is tier


@pytest.mark.parametrize("raw", ["", "best", "popular", "0"])
def test_parse_refuses_other_names_and_names_the_field(raw: str) -> None:
    with pytest.raises(InputError) as info:
        Tier.parse(raw, field="max_tier")
    assert info.value.field == "max_tier"
    assert "popularity" in str(info.value)


@pytest.mark.parametrize("reason", list(SkipReason))
def test_skip_reasons_are_short_label_values(reason: SkipReason) -> None:
    assert reason.value.isidentifier() and reason.value == reason.value.lower()
    assert reason.__doc__  # each reason documents when it applies


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"user_id": "us-1", "count": 0}, "count"),
        ({"user_id": "us-1", "count": MAX_COUNT + 1}, "count"),
        ({"user_id": "us-1", "count": True}, "count"),
        ({"user_id": "us-1", "count": 2.0}, "count"),
        ({"user_id": " ", "count": 5}, "user_id"),
        ({"user_id": "us-1", "count": 5, "max_tier": "full"}, "max_tier"),
    ],
)
def test_request_validation_names_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(InputError) as info:
        TierRequest(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


@pytest.mark.parametrize(("user_id", "anonymous"), [(None, True), ("eu-7", False)])
def test_request_anonymous(user_id: str | None, anonymous: bool) -> None:
    assert TierRequest(user_id=user_id, count=1).anonymous is anonymous


@pytest.mark.parametrize(
    ("count", "fraction", "expected"),
    [(10, 1.0, 10), (10, 0.5, 5), (10, 0.55, 6), (1, 0.01, 1), (3, 1 / 3, 1), (20, 0.8, 16), (7, 0.999, 7)],
)
def test_min_items(count: int, fraction: float, expected: int) -> None:
    assert min_items(count, fraction) == expected


def test_output_from_ids_splits_items_and_reserve_best_first() -> None:
    out = TierOutput.from_ids(["a", "b", "c", "d"], count=3)
    assert [i.item_id for i in out.items] == ["a", "b", "c"]
    assert out.reserve == (ScoredItem("d", 0.25),)
    scores = [i.score for i in out.items + out.reserve]
    assert scores == sorted(scores, reverse=True)


def test_dependency_failed_is_temporary_and_names_the_dependency() -> None:
    err = DependencyFailed("redis", "connection refused", delay=0.5)
    assert isinstance(err, TemporaryError)
    assert err.dependency == "redis" and err.delay == 0.5 and "redis" in str(err)


def test_counters_preset_every_label_and_count_one_answer() -> None:
    registry = CollectorRegistry()
    counters = TierCounters.create(registry)
    preset = [s for m in registry.collect() if m.name == "shopnow_tier_skipped" for s in m.samples
              if s.name.endswith("_total")]
    assert len(preset) == len(Tier) * len(SkipReason)
    record_tiers(counters, served=Tier.SEGMENT,
                 skipped=[(Tier.FULL, SkipReason.BREAKER_OPEN), (Tier.CACHED, SkipReason.EMPTY)])
    get = registry.get_sample_value
    assert get("shopnow_tier_served_total", {"tier": "segment"}) == 1.0
    assert get("shopnow_tier_served_total", {"tier": "full"}) == 0.0
    assert get("shopnow_tier_skipped_total", {"tier": "full", "reason": "breaker_open"}) == 1.0
    assert get("shopnow_tier_skipped_total", {"tier": "cached", "reason": "empty"}) == 1.0
    assert get("shopnow_tier_skipped_total", {"tier": "cached", "reason": "timeout"}) == 0.0


def test_import_registers_nothing_globally() -> None:
    code = (
        "import fallback_tiers.ladder, fallback_tiers.breaker, serving.reranking\n"
        "from prometheus_client import REGISTRY\n"
        "print(sorted(m.name for m in REGISTRY.collect()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert "python_info" in out.stdout  # the listing worked
    assert "shopnow" not in out.stdout
