"""POST /v1/events bodies, parsed by one function for the edge and the cell."""
from __future__ import annotations

import json

import pytest

from contracts.events_body import BatchTooLarge, events_of_body
from contracts.limits import MAX_BATCH
from regions.errors import InputError


def test_a_good_body_gives_its_events_unchecked() -> None:
    assert events_of_body(json.dumps({"events": [{"a": 1}, "x"]}).encode()) == [{"a": 1}, "x"]


@pytest.mark.parametrize(("body", "field"), [
    (b"{not json", "body"), (b"\xff\xfe", "body"), (b"[]", "events"), (b'{"event": []}', "events"),
    (b'{"events": []}', "events"), (b'{"events": {"a": 1}}', "events"),
])
def test_bad_bodies_are_422_naming_the_field(body: bytes, field: str) -> None:
    with pytest.raises(InputError) as info:
        events_of_body(body)
    assert info.value.field == field and getattr(info.value, "http_status", 422) == 422


def test_more_than_max_batch_is_413() -> None:
    events_of_body(json.dumps({"events": [{}] * MAX_BATCH}).encode())
    with pytest.raises(BatchTooLarge) as info:
        events_of_body(json.dumps({"events": [{}] * (MAX_BATCH + 1)}).encode())
    assert info.value.http_status == 413 and info.value.field == "events"
