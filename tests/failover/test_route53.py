"""Route 53 weighted records from the routing table: the pure change batch, and a real round trip
through moto's Route 53 in server mode (ThreadedMotoServer on a free loopback port)."""
from __future__ import annotations

from typing import Any

import pytest

from failover.route53 import PublishResult, publish_weights, read_weights, weighted_changes
from contracts.routing_table import parse_table
from regions.errors import InputError, PermanentError, TemporaryError
from regions.processes import LOOPBACK, free_port
from regions.topology import parse_topology
from tests.failover.conftest import route53_test_client

TOPO = parse_topology({
    "geographies": {"us": {"peak_share": 0.7}, "eu": {"peak_share": 0.3}},
    "regions": {
        "us-east": {"geography": "us", "capacity_qps": 400, "http_port": 18101, "grpc_port": 19101, "redis_port": 16401},
        "us-west": {"geography": "us", "capacity_qps": 400, "http_port": 18102, "grpc_port": 19102, "redis_port": 16402},
        "eu-west": {"geography": "eu", "capacity_qps": 400, "http_port": 18103, "grpc_port": 19103, "redis_port": 16403},
    },
})
TARGETS = {"us-east": "127.0.0.11", "us-west": "127.0.0.12", "eu-west": "eu-west.cells.shop.internal"}
NORMAL = parse_table({"version": 1, "geos": {"us": {"regions": {"us-east": 60, "us-west": 40}},
                                             "eu": {"regions": {"eu-west": 100}}}}, TOPO)
EU_DOWN = parse_table({"version": 2, "geos": {"us": {"regions": {"us-east": 50, "us-west": 50}},
                                              "eu": {"regions": {"us-east": 50, "us-west": 50}, "anonymous": True}}}, TOPO)


# -- pure ------------------------------------------------------------------------------------------

def test_one_record_per_geography_and_region() -> None:
    records = weighted_changes(NORMAL, record_name="shop.example.com", region_targets=TARGETS)
    assert [(r.name, r.region, r.weight, r.type) for r in records] == [
        ("eu.shop.example.com.", "eu-west", 100, "CNAME"),
        ("us.shop.example.com.", "us-east", 60, "A"),
        ("us.shop.example.com.", "us-west", 40, "A"),
    ]
    change = records[1].change()
    assert change["Action"] == "UPSERT" and change["ResourceRecordSet"]["SetIdentifier"] == "us-east"


def test_an_anonymous_geography_is_published_with_its_actual_targets_and_old_records_zeroed() -> None:
    existing = {"eu.shop.example.com.": {"eu-west": TARGETS["eu-west"]}}
    records = weighted_changes(EU_DOWN, record_name="shop.example.com.", region_targets=TARGETS, existing=existing)
    eu = {(r.region, r.weight, r.target) for r in records if r.name.startswith("eu.")}
    assert eu == {("us-east", 50, "127.0.0.11"), ("us-west", 50, "127.0.0.12"), ("eu-west", 0, TARGETS["eu-west"])}


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"record_name": "", "region_targets": TARGETS}, "record_name"),
    ({"record_name": "shop.example.com", "region_targets": {"us-east": "127.0.0.1"}}, "region_targets"),
    ({"record_name": "shop.example.com", "region_targets": TARGETS, "ttl": -1}, "ttl"),
])
def test_bad_inputs_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(InputError) as info:
        weighted_changes(NORMAL, **kwargs)
    assert info.value.field == field


def test_weights_above_what_route53_allows_are_refused() -> None:
    big = parse_table({"version": 3, "geos": {"us": {"regions": {"us-east": 300, "us-west": 0}}}}, TOPO)
    with pytest.raises(InputError) as info:
        weighted_changes(big, record_name="shop.example.com", region_targets=TARGETS)
    assert info.value.field == "geos.us.regions.us-east"


# -- moto's Route 53 server ----------------------------------------------------------------------------

def _client(url: str) -> Any:
    return route53_test_client(url)


@pytest.fixture
def zone(moto_url: str) -> tuple[Any, str]:
    client = _client(moto_url)
    zone_id = client.create_hosted_zone(Name="example.com", CallerReference=str(free_port()))["HostedZone"]["Id"]
    return client, zone_id


def test_publish_and_read_back(zone: tuple[Any, str]) -> None:
    client, zone_id = zone
    result = publish_weights(NORMAL, client=client, hosted_zone_id=zone_id, record_name="shop.example.com",
                             region_targets=TARGETS)
    assert isinstance(result, PublishResult) and result.change_id
    assert read_weights(client=client, hosted_zone_id=zone_id, record_name="shop.example.com") == {
        "eu": {"eu-west": 100}, "us": {"us-east": 60, "us-west": 40}}


def test_a_new_table_upserts_and_zeroes_what_it_no_longer_lists(zone: tuple[Any, str]) -> None:
    client, zone_id = zone
    for table in (NORMAL, EU_DOWN):
        publish_weights(table, client=client, hosted_zone_id=zone_id, record_name="shop.example.com",
                        region_targets=TARGETS)
    assert read_weights(client=client, hosted_zone_id=zone_id, record_name="shop.example.com") == {
        "eu": {"eu-west": 0, "us-east": 50, "us-west": 50}, "us": {"us-east": 50, "us-west": 50}}
    sets = client.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
    eu_east = [s for s in sets if s["Name"] == "eu.shop.example.com." and s.get("SetIdentifier") == "us-east"]
    assert eu_east[0]["ResourceRecords"] == [{"Value": "127.0.0.11"}] and eu_east[0]["Type"] == "A"


def test_a_missing_zone_is_permanent(moto_url: str) -> None:
    with pytest.raises(PermanentError) as info:
        publish_weights(NORMAL, client=_client(moto_url), hosted_zone_id="ZNOSUCHZONE", record_name="shop.example.com",
                        region_targets=TARGETS)
    assert info.value.__cause__ is not None


def test_an_unreachable_endpoint_is_temporary() -> None:
    with pytest.raises(TemporaryError) as info:
        publish_weights(NORMAL, client=_client(f"http://{LOOPBACK}:{free_port()}"), hosted_zone_id="Z1",
                        record_name="shop.example.com", region_targets=TARGETS)
    assert info.value.__cause__ is not None
