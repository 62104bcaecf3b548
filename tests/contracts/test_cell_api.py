"""The cell's wire API: pb <-> Event (one conversion, one validation), limits, surfaces."""
from __future__ import annotations

import dataclasses
import time

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from contracts.cell_api import (
    MAX_COUNT, MAX_ID_LEN, SURFACES, answer_from_pb, check_count, event_from_pb, event_to_pb, surface_name, surface_pb,
)
from contracts.events import EVENT_TYPES, Event, parse_event
from contracts.proto import recommend_pb2 as pb
from regions.errors import InputError
from tests.contracts.topologies import make_topology

TOPO = make_topology({"us": ["us-east", "us-west"], "eu": ["eu-west"]})
NOW = 1_764_000_000.0
ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=MAX_ID_LEN)


@hsettings(max_examples=200, deadline=None)
@given(user=ids, item=ids, event_id=ids, session=st.one_of(st.just(""), ids), etype=st.sampled_from(EVENT_TYPES),
       ts=st.floats(1.0, NOW + 299.0), seq=st.integers(-1, 2**62), price=st.floats(0, 1e6),
       geo=st.sampled_from(["us", "eu"]))
def test_event_round_trips_through_the_message(user: str, item: str, event_id: str, session: str, etype: str,
                                               ts: float, seq: int, price: float, geo: str) -> None:
    event = Event(event_id=event_id, user_id=user, item_id=item, type=etype, ts=ts, geo=geo, session_id=session,
                  seq=seq, price=price)
    wire = pb.Event.FromString(event_to_pb(event).SerializeToString())
    assert event_from_pb(wire, now=NOW, topology=TOPO) == event


def test_a_message_without_ts_is_refused_naming_ts_and_never_stamped() -> None:
    with pytest.raises(InputError) as info:
        event_from_pb(pb.Event(user_id="us-1", item_id="i", type="view"), now=NOW, topology=TOPO)
    assert info.value.field == "ts"


def test_a_message_without_geo_gets_the_users_home_geography_and_an_event_id() -> None:
    event = event_from_pb(pb.Event(user_id="eu-4", item_id="i", type="view", ts=NOW), now=NOW, topology=TOPO)
    assert event.geo == "eu" and len(event.event_id) == 32 and event.seq == -1


@pytest.mark.parametrize(("change", "field"), [
    ({"type": "hover"}, "type"), ({"ts": NOW + 3600}, "ts"), ({"ts": -1.0}, "ts"), ({"price": -2.0}, "price"),
    ({"item_id": ""}, "item_id"), ({"user_id": ""}, "user_id"), ({"session_id": "s" * (MAX_ID_LEN + 1)}, "session_id"),
])
def test_bad_messages_are_refused_naming_the_field(change: dict, field: str) -> None:
    fields = {"user_id": "us-1", "item_id": "i", "type": "view", "ts": NOW, **change}
    with pytest.raises(InputError) as info:
        event_from_pb(pb.Event(**fields), now=NOW, topology=TOPO)
    assert info.value.field == field


def test_the_json_parser_and_the_message_agree_on_a_valid_event() -> None:
    raw = {"event_id": "e1", "user_id": "us-1", "item_id": "i", "type": "cart", "ts": NOW - 5, "seq": 3, "price": 2.5}
    from_json = parse_event(raw, now=NOW, geo="us")
    assert event_from_pb(event_to_pb(from_json), now=NOW, topology=TOPO) == from_json
    assert dataclasses.asdict(from_json)["geo"] == "us"


def test_count_and_surfaces() -> None:
    assert check_count(1) == 1 and check_count(MAX_COUNT) == MAX_COUNT
    for bad in (0, MAX_COUNT + 1, True, "3"):
        with pytest.raises(InputError) as info:
            check_count(bad)  # type: ignore[arg-type]
        assert info.value.field == "count"
    assert [surface_name(surface_pb(s)) for s in SURFACES] == list(SURFACES)
    with pytest.raises(InputError):
        surface_pb("checkout")


def test_answer_from_pb_has_the_http_answer_fields() -> None:
    resp = pb.RecommendResponse(items=[pb.Item(item_id="a", score=0.5)], tier="cached", region="us-east",
                                skipped=[pb.Skip(tier="full", reason="budget")], stale=True, latency_ms=3.0)
    assert answer_from_pb(resp) == {"items": [{"item_id": "a", "score": 0.5}], "tier": "cached", "region": "us-east",
                                    "bundle_version": "", "skipped": [{"tier": "full", "reason": "budget"}],
                                    "stale": True, "latency_ms": 3.0}


def test_the_ts_default_of_the_http_api_is_the_receivers_clock() -> None:
    now = time.time()
    assert parse_event({"user_id": "us-1", "item_id": "i", "type": "view"}, now=now, geo="us").ts == now


@pytest.mark.parametrize(("change", "field"), [
    ({"seq": 2**63}, "seq"), ({"seq": -2}, "seq"),
    ({"item_id": "sku-\ud800"}, "item_id"), ({"session_id": "\udfff"}, "session_id"),
])
def test_what_the_message_cannot_carry_is_refused_by_the_json_parser(change: dict, field: str) -> None:
    """Found by schemathesis against the edge: a seq beyond int64 or a lone surrogate in an id was
    a 500 when the edge built the gRPC message; now a 422 naming the field, before any cell is asked."""
    with pytest.raises(InputError) as err:
        parse_event({"user_id": "us-1", "item_id": "i", "type": "view", **change}, now=NOW, geo="us")
    assert err.value.field == field
    ok = parse_event({"user_id": "us-1", "item_id": "i", "type": "view", "seq": 2**63 - 1}, now=NOW, geo="us")
    assert event_to_pb(ok).seq == 2**63 - 1
