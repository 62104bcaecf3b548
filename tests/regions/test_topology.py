"""Topology loading: the default file, and every kind of bad input naming the key."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, strategies as st

from regions.errors import InputError, TopologyError
from regions.geo import home_geography_of, may_hold_personal_data, replication_peers, require_personal_data_allowed
from regions.topology import load_topology, parse_topology

BASE: dict[str, Any] = {
    "settings": {"controller_port": 8100, "edge_port": 8080},
    "geographies": {"us": {"peak_share": 0.7}, "eu": {"peak_share": 0.3}},
    "regions": {
        "us-east": {"geography": "us", "capacity_qps": 400, "http_port": 8101, "grpc_port": 9101, "redis_port": 6401},
        "us-west": {"geography": "us", "capacity_qps": 400, "http_port": 8102, "grpc_port": 9102, "redis_port": 6402},
        "eu-west": {"geography": "eu", "capacity_qps": 400, "http_port": 8103, "grpc_port": 9103, "redis_port": 6403},
    },
}


def test_default_topology_file_loads() -> None:
    topo = load_topology()
    assert sorted(topo.regions) == ["eu-west", "us-east", "us-west"]
    assert [r.name for r in topo.regions_in("us")] == ["us-east", "us-west"]
    assert topo.single_region_geographies() == ("eu",)
    assert topo.settings.host == "127.0.0.1"
    assert (topo.settings.rto_budget_s, topo.settings.quality_rto_budget_s) == (600.0, 120.0)


def _with(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    raw = copy.deepcopy(BASE)
    node = raw
    for key in path[:-1]:
        node = node.setdefault(key, {})
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return raw


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "field", "words"),
    [
        (("regions", "us-east", "geography"), "asia", "regions.us-east.geography", "unknown geography"),
        (("regions", "us-east", "geography"), _DELETE, "regions.us-east.geography", "missing"),
        (("regions", "us-west", "http_port"), 8101, "regions.us-west.http_port", "duplicate port 8101"),
        (("regions", "us-west", "redis_port"), 8080, "regions.us-west.redis_port", "duplicate port 8080"),
        (("regions", "us-west", "grpc_port"), 70000, "regions.us-west.grpc_port", "1..65535"),
        (("regions", "us-west", "capacity_qps"), -5, "regions.us-west.capacity_qps", "greater than 0"),
        (("regions", "us-west", "capacity_qps"), "lots", "regions.us-west.capacity_qps", "must be a number"),
        (("regions", "us-west", "colour"), "red", "regions.us-west.colour", "unknown key"),
        (("geographies", "us", "peak_share"), 0.9, "geographies.*.peak_share", "sum to 1"),
        (("geographies", "apac"), {"peak_share": 0.0001}, "geographies.*.peak_share", "sum to 1"),
        (("settings", "host"), "10.0.0.1", "settings.host", "loopback"),
        (("settings", "host"), "example.com", "settings.host", "loopback"),
        (("settings", "edge_port"), 8100, "settings.edge_port", "duplicate port"),
        (("settings", "colour"), 1, "settings.colour", "unknown setting"),
        (("settings", "quality_rto_budget_s"), 0, "settings.quality_rto_budget_s", "greater than 0"),
        (("settings", "quality_rto_budget_s"), "2 min", "settings.quality_rto_budget_s", "must be a number"),
    ],
)
def test_bad_topology_names_the_key(path: tuple[str, ...], value: Any, field: str, words: str) -> None:
    with pytest.raises(TopologyError) as info:
        parse_topology(_with(path, value))
    assert info.value.field == field
    assert words in str(info.value)


def test_geography_without_region_is_refused() -> None:
    raw = copy.deepcopy(BASE)
    raw["geographies"] = {"us": {"peak_share": 0.5}, "eu": {"peak_share": 0.3}, "apac": {"peak_share": 0.2}}
    with pytest.raises(TopologyError, match="geographies.apac: has no region"):
        parse_topology(raw)


def test_missing_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match="REGIONCTL_TOPOLOGY"):
        load_topology(tmp_path / "nope.toml")


def test_invalid_toml_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "t.toml"
    bad.write_text("[regions\n")
    with pytest.raises(TopologyError, match="not valid TOML"):
        load_topology(bad)


def test_unknown_region_lookup_lists_known() -> None:
    topo = parse_topology(BASE)
    with pytest.raises(TopologyError, match="known regions: eu-west, us-east, us-west"):
        topo.region("ap-south")


@pytest.mark.parametrize(
    ("region", "geo", "allowed"),
    [("us-east", "us", True), ("us-west", "us", True), ("eu-west", "eu", True),
     ("us-east", "eu", False), ("eu-west", "us", False)],
)
def test_personal_data_stays_in_its_geography(region: str, geo: str, allowed: bool) -> None:
    topo = parse_topology(BASE)
    assert may_hold_personal_data(topo, region=region, home_geography=geo) is allowed
    if not allowed:
        with pytest.raises(InputError, match="may not hold personal data"):
            require_personal_data_allowed(topo, region=region, home_geography=geo)


def test_replication_peers_are_same_geography_only() -> None:
    topo = parse_topology(BASE)
    assert replication_peers(topo, "us-east") == ("us-west",)
    assert replication_peers(topo, "eu-west") == ()


@given(st.text(min_size=1, max_size=40))
def test_every_user_has_exactly_one_known_home_geography(user_id: str) -> None:
    topo = parse_topology(BASE)
    geo = home_geography_of(user_id, topo)
    assert geo in topo.geographies
    assert home_geography_of(user_id, topo) == geo


@pytest.mark.parametrize(("user_id", "geo"), [("us-1", "us"), ("eu-99", "eu")])
def test_prefixed_user_ids_map_to_their_geography(user_id: str, geo: str) -> None:
    assert home_geography_of(user_id, parse_topology(BASE)) == geo
