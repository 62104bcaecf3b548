"""Deletion honoured everywhere: a deleted user's new events are refused with a clear error and not
logged; their pseudonymised archive entries go too (or are reported as remaining without the key);
the 30-day deadline of the bundle embedding is tracked."""
from __future__ import annotations

from typing import Callable

import pytest

from regions import redis_keys
from replication.deletion import delete_user
from replication.erasure_deadline import TOMBSTONES_READ_AT, bundle_remains, due_by, erasure_status
from replication.interaction_log import append_events
from replication.retention import ARCHIVE_LOG, RetentionSettings, run_retention
from replication.tombstones import UserDeleted
from tests.replication.helpers import Stack, event, stack_factory  # noqa: F401

KEY = b"retention-test-key"
DAY = 86400.0


def test_new_events_of_a_deleted_user_are_refused_and_not_logged(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory()
    c, topo = stack.clients, stack.topology
    append_events(c["eu-west"], [event("eu-1", seq=1)], topology=topo, region="eu-west")
    delete_user(topo, c, "eu-1", 1_800_000_000.0)
    with pytest.raises(UserDeleted) as refused:
        append_events(c["eu-west"], [event("eu-2", seq=2), event("eu-1", seq=3)], topology=topo, region="eu-west")
    assert refused.value.field == "user_id"
    assert "eu-1" in str(refused.value) and "deleted at 2027-01-15" in str(refused.value) and "event 1" in str(refused.value)
    assert c["eu-west"].xlen(redis_keys.EVENT_LOG) == 0  # nothing of the batch, not even eu-2's event
    append_events(c["eu-west"], [event("eu-2", seq=4)], topology=topo, region="eu-west")
    assert c["eu-west"].xlen(redis_keys.EVENT_LOG) == 1


def test_archive_entries_are_removed_with_the_key_and_reported_without_it(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory()
    c, topo = stack.clients, stack.topology
    append_events(c["us-east"], [event("us-1", seq=1), event("us-2", seq=2), event("us-1", seq=3)], topology=topo, region="us-east")
    now = 4_000_000_000.0  # far in the future: every entry is past retention
    run_retention(topo, c, now, settings=RetentionSettings(mode="pseudonymise"), key=KEY)
    assert c["us-east"].xlen(ARCHIVE_LOG) == 3
    without = delete_user(topo, c, "us-1", now)
    east = next(r for r in without.regions if r.region == "us-east")
    assert any("3 pseudonymised entries could not be searched" in m for m in east.remains)
    assert c["us-east"].xlen(ARCHIVE_LOG) == 3
    report = delete_user(topo, c, "us-1", now, pseudonym_key=KEY)
    east = next(r for r in report.regions if r.region == "us-east")
    assert east.log_entries_removed == {ARCHIVE_LOG: 2} and east.remains == ()
    assert c["us-east"].xlen(ARCHIVE_LOG) == 1


def test_deadline_pending_until_a_bundle_honours_the_tombstone() -> None:
    deleted = 1_000.0 * DAY
    tombstones = {"eu-1": repr(deleted), "eu-2": repr(deleted - 40 * DAY)}
    old = {TOMBSTONES_READ_AT: deleted - 50 * DAY}
    status = erasure_status("eu", tombstones, bundle_metrics=old, now=deleted + DAY)
    assert (status.pending, status.overdue, status.next_due_by) == (2, 1, due_by(deleted - 40 * DAY))
    assert erasure_status("eu", tombstones, bundle_metrics={TOMBSTONES_READ_AT: deleted + 1}, now=deleted + DAY).pending == 0
    assert erasure_status("eu", tombstones, bundle_metrics={}, now=deleted).pending == 2  # a bundle that never read tombstones
    assert erasure_status("eu", tombstones, bundle_metrics=None, now=deleted).pending == 0  # no bundle serves anyone
    note = bundle_remains("eu", version="v1", bundle_metrics=old, deleted_at=deleted)
    assert note is not None and "excluded from the next bundle, due by" in note
    assert bundle_remains("eu", version="v2", bundle_metrics={TOMBSTONES_READ_AT: deleted + 1}, deleted_at=deleted) is None
