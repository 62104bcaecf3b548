"""The routing table contract: the one parse (the edge) and the one render (the controller)."""
from __future__ import annotations

import json
from types import MappingProxyType
from typing import Any, Mapping

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from contracts.routing_table import (
    GeoRoute, RoutingTable, RoutingTableError, TierLimit, default_table, parse_table, render_table,
)
from contracts.tiers import TIER_NAMES
from tests.contracts.topologies import DOC_TABLE, make_topology

TOPO = make_topology({"us": ["us-east", "us-west"], "eu": ["eu-west"]})
def table(geos: Mapping[str, Any], **extra: Any) -> RoutingTable:
    return parse_table({"version": 1, "geos": geos, **extra}, TOPO)


# -- parsing ----------------------------------------------------------------------------------------

def test_the_documented_example_parses() -> None:
    t = parse_table(json.dumps(DOC_TABLE).encode(), TOPO)
    assert (t.version, t.updated_at, t.fail_static) == (12, 1764000000.0, False)
    assert dict(t.route("us").regions) == {"us-east": 50, "us-west": 50} and not t.route("us").anonymous
    assert t.route("eu").anonymous and dict(t.route("eu").regions) == {"us-east": 50, "us-west": 50}
    assert {r: lim.tier for r, lim in t.max_tier.items()} == {"us-east": "full", "us-west": "full", "eu-west": "full"}


def test_a_geography_left_out_gets_equal_weights_over_its_own_regions() -> None:
    t = table({"us": {"regions": {"us-east": 100, "us-west": 0}}})
    assert dict(t.route("eu").regions) == {"eu-west": 1} and not t.route("eu").anonymous
    assert dict(default_table(TOPO).route("us").regions) == {"us-east": 1, "us-west": 1}


@pytest.mark.parametrize(("raw", "field"), [
    (b"{not json", "routing/table"),
    ([], "routing/table"),
    ({"geos": {}}, "version"),
    ({"version": -1}, "version"),
    ({"version": True}, "version"),
    ({"version": 1, "updated_at": "yesterday"}, "updated_at"),
    ({"version": 1, "fail_static": "no"}, "fail_static"),
    ({"version": 1, "geos": []}, "geos"),
    ({"version": 1, "geos": {"mars": {"regions": {}}}}, "geos.mars"),
    ({"version": 1, "geos": {"us": {"regions": {"us-nowhere": 5}}}}, "geos.us.regions.us-nowhere"),
    ({"version": 1, "geos": {"us": {"regions": {"us-east": -5}}}}, "geos.us.regions.us-east"),
    ({"version": 1, "geos": {"us": {"regions": {"us-east": 2.5}}}}, "geos.us.regions.us-east"),
    ({"version": 1, "geos": {"us": {"regions": {"us-east": 50}, "anonymous": "yes"}}}, "geos.us.anonymous"),
    # residency: a personal route may not leave its geography
    ({"version": 1, "geos": {"eu": {"regions": {"us-east": 100}, "anonymous": False}}}, "geos.eu.regions.us-east"),
    ({"version": 1, "max_tier": {"us-east": "best"}}, "max_tier.us-east"),
    ({"version": 1, "max_tier": {"us-moon": "full"}}, "max_tier.us-moon"),
    ({"version": 1, "max_tier": {"us-east": {"tier": "segment", "fraction": 1.5}}}, "max_tier.us-east.fraction"),
    ({"version": 1, "max_tier": {"us-east": 3}}, "max_tier.us-east"),
])
def test_a_bad_table_is_refused_naming_the_field(raw: Any, field: str) -> None:
    with pytest.raises(RoutingTableError) as info:
        parse_table(raw, TOPO)
    assert info.value.field == field


def test_max_tier_accepts_a_fraction_object() -> None:
    t = table({}, max_tier={"us-east": {"tier": "segment", "fraction": 0.25}})
    assert (t.max_tier["us-east"].tier, t.max_tier["us-east"].fraction) == ("segment", 0.25)


@hsettings(max_examples=100, deadline=None)
@given(us=st.tuples(st.integers(0, 100), st.integers(0, 100)), eu=st.integers(0, 100), anonymous=st.booleans(),
       tier=st.sampled_from(TIER_NAMES), fraction=st.floats(0, 1), version=st.integers(0, 10**6),
       fail_static=st.booleans())
def test_parse_of_render_is_the_table(us: tuple[int, int], eu: int, anonymous: bool, tier: str, fraction: float,
                                      version: int, fail_static: bool) -> None:
    eu_route = GeoRoute(geography="eu", regions=MappingProxyType({"us-east": eu} if anonymous else {"eu-west": eu}),
                        anonymous=anonymous)
    table = RoutingTable(version=version, updated_at=1.5, fail_static=fail_static,
                         geos=MappingProxyType({"us": GeoRoute(geography="us", regions=MappingProxyType(
                             {"us-east": us[0], "us-west": us[1]})), "eu": eu_route}),
                         max_tier=MappingProxyType({"us-west": TierLimit(tier=tier, fraction=fraction)}))
    assert parse_table(json.dumps(render_table(table)), TOPO) == table


def test_the_default_table_renders_and_parses_back() -> None:
    assert parse_table(render_table(default_table(TOPO)), TOPO) == default_table(TOPO)
