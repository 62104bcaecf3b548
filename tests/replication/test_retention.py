"""Retention: events past 30 days are trimmed (or pseudonymised), by the source's acknowledgement time."""
from __future__ import annotations

import time
from typing import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from regions import redis_keys
from regions.errors import InputError
from replication.interaction_log import append_events, stream_last_id
from replication.lag import StreamId
from replication.replicating import Replicator, ReplicatorSettings
from replication.retention import (
    ARCHIVE_LOG, RetentionSettings, pseudonym, pseudonymise_fields, retention_cutoff, run_retention,
)
from tests.replication.helpers import US_EU, Stack, event, paper_topology, stack_factory, stream_ids  # noqa: F401

DAY = 86400.0
NOW = time.time()
"""Real time: events appended by the tests get ids from the Redis clock, i.e. now."""
FAST = ReplicatorSettings(block_ms=0, retry_s=0.05)


def _old_and_new(stack: Stack) -> tuple[list[str], list[str]]:
    """Events acknowledged 40 and 35 days ago (explicit ids: a stream id is an acknowledgement time) and today."""
    east = stack.clients["us-east"]
    old = []
    for days, user in ((40, "us-old1"), (35, "us-old2")):
        old.append(east.xadd(redis_keys.EVENT_LOG, event(user).to_fields(), id=f"{int((NOW - days * DAY) * 1000)}-0").decode())
    new = append_events(east, [event("us-new", seq=i) for i in range(3)], topology=stack.topology, region="us-east")
    return old, new


@pytest.mark.parametrize(("now", "days", "expected"), [
    (NOW, 30, StreamId(int((NOW - 30 * DAY) * 1000), 0)),
    (NOW, 0.5, StreamId(int((NOW - 0.5 * DAY) * 1000), 0)),
    (10.0, 30, StreamId(0, 0)),
])
def test_retention_cutoff(now: float, days: float, expected: StreamId) -> None:
    assert retention_cutoff(now, days) == expected


@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40))
def test_pseudonyms_are_stable_and_distinct(a: str, b: str) -> None:
    key = b"k"
    assert pseudonym(a, key) == pseudonym(a, key)
    assert (pseudonym(a, key) == pseudonym(b, key)) == (a == b)
    assert pseudonym(a, key) != pseudonym(a, b"another key")


def test_pseudonymised_fields_hide_user_session_and_event_ids() -> None:
    out = pseudonymise_fields(event("us-7").to_fields(), key=b"k", source_stream="log:events", source_id="1-0")
    assert "us-7" not in repr(out)
    assert (out["item_id"], out["type"], out["source_id"]) == ("item-1", "view", "1-0")
    assert "event_id" not in out


@pytest.mark.parametrize(("kwargs", "field"), [({"mode": "shred"}, "mode"), ({"max_age_days": 0}, "max_age_days")])
def test_bad_settings_are_refused(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(InputError) as err:
        RetentionSettings(**kwargs)  # type: ignore[arg-type]
    assert err.value.field == field


def test_pseudonymise_without_a_key_is_refused() -> None:
    with pytest.raises(InputError) as err:
        run_retention(paper_topology(), {}, NOW, settings=RetentionSettings(mode="pseudonymise"))
    assert err.value.field == "key"


def test_trim_removes_old_events_from_the_source_and_every_replica_keeping_checkpoints(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory(US_EU)
    old, new = _old_and_new(stack)
    replicator = Replicator(topology=stack.topology, source="us-east", clients=stack.clients, settings=FAST)
    while replicator.step().read:
        pass
    stack.clients["us-east"].xadd(redis_keys.DEAD_LETTER, {"raw": "user_id=us-old1"}, id=f"{int((NOW - 31 * DAY) * 1000)}-0")
    for age_days in (31, 1):  # what us-old1 was shown 31 days ago goes, yesterday's stays
        stack.clients["us-east"].xadd(redis_keys.IMPRESSIONS, {"user_id": "us-old1"}, id=f"{int((NOW - age_days * DAY) * 1000)}-0")
    # Replica entries keep the source id: the 40-day-old event copied today is still 40 days old.
    assert stream_ids(stack.clients["us-west"], redis_keys.replica_log("us-east")) == old + new

    report = run_retention(stack.topology, stack.clients, NOW)

    removed = {(s.region, s.stream): s.removed for s in report.streams if s.removed}
    assert removed == {("us-east", "log:events"): 2, ("us-west", "log:replica:us-east"): 2, ("us-east", "log:dead"): 1,
                       ("us-east", "log:impressions"): 1}
    assert stack.clients["us-east"].xlen(redis_keys.IMPRESSIONS) == 1
    assert stream_ids(stack.clients["us-east"], redis_keys.EVENT_LOG) == new
    assert stream_ids(stack.clients["us-west"], redis_keys.replica_log("us-east")) == new
    # The replica's last id (the replicator's checkpoint) did not move back: nothing is copied again.
    assert stream_last_id(stack.clients["us-west"], redis_keys.replica_log("us-east")) == new[-1]
    assert Replicator(topology=stack.topology, source="us-east", clients=stack.clients, settings=FAST).step().read == 0
    assert stream_ids(stack.clients["us-west"], redis_keys.replica_log("us-east")) == new


def test_a_stream_trimmed_to_empty_keeps_its_checkpoint(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory(US_EU)
    old, _ = _old_and_new(stack)
    replicator = Replicator(topology=stack.topology, source="us-east", clients=stack.clients, settings=FAST)
    while replicator.step().read:
        pass
    run_retention(stack.topology, stack.clients, NOW + 400 * DAY)
    west = stack.clients["us-west"]
    assert west.xlen(redis_keys.replica_log("us-east")) == 0
    assert stream_last_id(west, redis_keys.replica_log("us-east")) == stream_last_id(stack.clients["us-east"], redis_keys.EVENT_LOG)
    fresh = Replicator(topology=stack.topology, source="us-east", clients=stack.clients, settings=FAST)
    assert fresh.step().read == 0


def test_pseudonymise_moves_old_events_to_the_archive_without_identity(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory(US_EU)
    old, new = _old_and_new(stack)
    report = run_retention(stack.topology, stack.clients, NOW, settings=RetentionSettings(mode="pseudonymise", chunk=1), key=b"secret")
    assert sum(s.archived for s in report.streams) == 2
    east = stack.clients["us-east"]
    assert stream_ids(east, redis_keys.EVENT_LOG) == new
    archive = [{k.decode(): v.decode() for k, v in f.items()} for _, f in east.xrange(ARCHIVE_LOG)]
    assert [a["source_id"] for a in archive] == old
    assert [a["user_id"] for a in archive] == [pseudonym("us-old1", b"secret"), pseudonym("us-old2", b"secret")]
    assert "us-old" not in repr(archive)
