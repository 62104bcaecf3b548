"""The interaction log: append (acknowledged = XADD returned, AOF on), residency, validation, durability."""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

import pytest

from regions import redis_keys
from regions.errors import InputError, TemporaryError
from contracts.events import MAX_BATCH
from replication.interaction_log import (
    append_events, decode_entry, parse_batch, read_events, require_resident, stream_last_id,
)
from replication.redis_io import connect
from tests.replication.helpers import US_EU, Stack, event, paper_topology, stack_factory, stream_ids  # noqa: F401

NOW = 1_700_000_000.0


def test_append_returns_stream_ids_in_order_and_fields_round_trip(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory(US_EU)
    batch = [event("us-1", f"i{i}", seq=i, etype="purchase", price=9.5) for i in range(5)]
    ids = append_events(stack.clients["us-east"], batch, topology=stack.topology, region="us-east")
    assert ids == stream_ids(stack.clients["us-east"], redis_keys.EVENT_LOG)
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))
    entries = read_events(stack.clients["us-east"], topology=stack.topology, region="us-east")
    assert [e.event for e in entries] == batch
    assert stream_last_id(stack.clients["us-east"], redis_keys.EVENT_LOG) == ids[-1]


def test_read_events_pages_after_an_id(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory(US_EU)
    ids = append_events(stack.clients["us-east"], [event("us-1", seq=i) for i in range(7)], topology=stack.topology, region="us-east")
    page = read_events(stack.clients["us-east"], topology=stack.topology, region="us-east", after=ids[2], count=3)
    assert [e.entry_id for e in page] == ids[3:6]


@pytest.mark.parametrize(("region", "user"), [("us-east", "eu-7"), ("us-west", "eu-7"), ("eu-west", "us-1")])
def test_personal_data_of_another_geography_is_refused_and_nothing_is_written(stack_factory: Callable[..., Stack], region: str, user: str) -> None:
    stack = stack_factory(US_EU)
    own = "eu-1" if region == "eu-west" else "us-2"
    with pytest.raises(InputError) as err:
        append_events(stack.clients[region], [event(own), event(user)], topology=stack.topology, region=region)
    assert err.value.field == "user_id"
    assert stack.clients[region].exists(redis_keys.EVENT_LOG) == 0


def test_event_geography_must_match_the_user_id() -> None:
    liar = replace(event("eu-3"), geo="us")
    with pytest.raises(InputError) as err:
        require_resident(paper_topology(), region="us-east", event=liar)
    assert err.value.field == "geo"


def test_batches_over_the_limit_are_refused(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory(US_EU)
    with pytest.raises(InputError) as err:
        append_events(stack.clients["us-east"], [event("us-1")] * (MAX_BATCH + 1), topology=stack.topology, region="us-east")
    assert err.value.field == "events"


@pytest.mark.parametrize(("raw", "field"), [
    ({"user_id": "us-1", "item_id": "i", "type": "hover"}, "type"),
    ({"user_id": "us-1", "item_id": "i", "type": "view", "ts": NOW + 3600}, "ts"),
    ({"item_id": "i", "type": "view"}, "user_id"),
    ({"user_id": "us-1", "type": "view"}, "item_id"),
    ({"user_id": "us-1", "item_id": "i", "type": "purchase", "price": -3}, "price"),
    ("not an object", "event"),
])
def test_bad_client_events_are_refused_by_name_and_the_good_kept(raw: Any, field: str) -> None:
    good = {"user_id": "us-9", "item_id": "i9", "type": "cart", "ts": NOW}
    parsed = parse_batch([good, raw], now=NOW, topology=paper_topology())
    assert [e.user_id for e in parsed.events] == ["us-9"]
    assert [(r.index, r.field) for r in parsed.refused] == [(1, field)]


@pytest.mark.parametrize(("fields", "why"), [
    ({"user_id": "us-1"}, "event"),
    ({"event_id": "e", "user_id": "us-1", "item_id": "i", "type": "hover", "ts": "1.0", "geo": "us"}, "type"),
    ({"event_id": "e", "user_id": "us-1", "item_id": "i", "type": "view", "ts": "soon", "geo": "us"}, "event"),
    ({"event_id": "e", "user_id": "eu-1", "item_id": "i", "type": "view", "ts": "1.0", "geo": "eu"}, "user_id"),
])
def test_decode_entry_names_what_makes_an_entry_poison(fields: dict[str, str], why: str) -> None:
    with pytest.raises(InputError) as err:
        decode_entry(fields, topology=paper_topology(), region="us-east")
    assert err.value.field == why


def test_acknowledged_events_survive_kill_9_of_redis(stack_factory: Callable[..., Stack]) -> None:
    """AOF appendfsync always: an acknowledged XADD was fsync'ed before the reply; kill -9 loses none of it."""
    stack = stack_factory(US_EU)
    acked: list[str] = []
    for b in range(20):
        acked += append_events(stack.clients["us-east"], [event("us-1", seq=b * 50 + i) for i in range(50)],
                               topology=stack.topology, region="us-east")
    stack.procs["us-east"].kill()
    with pytest.raises(TemporaryError):
        append_events(stack.clients["us-east"], [event("us-1")], topology=stack.topology, region="us-east")
    stack.restart("us-east")
    assert stream_ids(stack.clients["us-east"], redis_keys.EVENT_LOG) == acked


def test_connect_uses_the_topology_port_on_loopback(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory(US_EU)
    client = connect(stack.topology, "eu-west")
    try:
        kwargs = client.connection_pool.connection_kwargs
        assert (kwargs["host"], kwargs["port"]) == ("127.0.0.1", stack.topology.region("eu-west").redis_port)
        assert client.ping()
    finally:
        client.close()
