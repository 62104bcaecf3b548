"""Route 53 from the controller (failover.dns_publish) against moto's Route 53 server: idempotent
publishing, retries, metrics, settings, the `regionctl dns` commands, and a running controller whose
region loss changes the records (the delay is printed: run with -s)."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from botocore.exceptions import ClientError

from contracts.store_keys import TABLE_KEY
from failover.controller_metrics import ControllerMetrics
from failover.dns_publish import DnsPublisher, DnsSettings, dns_settings_from_env, parse_targets
from failover.settings import ControllerSettings
from failover.sqlite_store import SqliteStore
from regions.errors import InputError
from regions.processes import free_port, wait_until
from tests.failover.conftest import route53_test_client
from tests.failover.controller_helpers import Rig, make_rig, write_toml
from tests.failover.pure_builders import DEFAULT

TARGETS = {"us-east": "127.0.0.11", "us-west": "127.0.0.12", "eu-west": "eu-west.cells.shop.internal"}
NORMAL = {"version": 1, "geos": {"us": {"regions": {"us-east": 50, "us-west": 50}}, "eu": {"regions": {"eu-west": 100}}}}
US_WEST_LOST = {"version": 2, "geos": {"us": {"regions": {"us-east": 100, "us-west": 0}},
                                       "eu": {"regions": {"eu-west": 100}}}}


class Counting:
    """The real boto3 client, counting ChangeResourceRecordSets calls and failing the first `fail` of
    them with `code` (Route 53's throttling answer by default) - moto cannot be told to throttle."""

    def __init__(self, client: Any, *, fail: int = 0, code: str = "Throttling") -> None:
        self.client, self.fail, self.code, self.changes = client, fail, code, 0

    def change_resource_record_sets(self, **kwargs: Any) -> Any:
        self.changes += 1
        if self.changes <= self.fail:
            raise ClientError({"Error": {"Code": self.code, "Message": "Rate exceeded"}}, "ChangeResourceRecordSets")
        return self.client.change_resource_record_sets(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


@pytest.fixture
def zone(moto_url: str) -> tuple[Any, str]:
    client = route53_test_client(moto_url)
    zone_id = client.create_hosted_zone(Name="example.com", CallerReference=str(free_port()))["HostedZone"]["Id"]
    return client, zone_id


def publisher(zone: tuple[Any, str], topology: Any = DEFAULT, **client_kwargs: Any) -> tuple[DnsPublisher, Counting]:
    client, zone_id = zone
    counting = Counting(client, **client_kwargs)
    settings = DnsSettings(hosted_zone_id=zone_id, record_name="shop.example.com", region_targets=TARGETS,
                           backoff_s=0.01)
    return DnsPublisher(settings, topology, client=counting), counting


def metric(pub: DnsPublisher, name: str, **labels: str) -> float:
    return pub.registry.get_sample_value(name, labels) or 0.0


def test_an_unchanged_table_makes_no_call(zone: tuple[Any, str]) -> None:
    pub, client = publisher(zone)
    assert pub.publish(NORMAL) == "published"
    assert pub.publish({**NORMAL, "version": 7, "updated_at": 123.0}) == "unchanged"  # same weights
    assert client.changes == 1
    assert pub.publish(US_WEST_LOST) == "published" and client.changes == 2
    assert pub.read() == {"eu": {"eu-west": 100}, "us": {"us-east": 100, "us-west": 0}}
    assert metric(pub, "shopnow_dns_publish_total", outcome="published") == 2
    assert metric(pub, "shopnow_dns_publish_total", outcome="unchanged") == 1
    assert metric(pub, "shopnow_dns_published_table_version") == 2


def test_throttling_is_retried_with_backoff_and_counted(zone: tuple[Any, str]) -> None:
    pub, client = publisher(zone, fail=2)
    assert pub.publish(NORMAL) == "published"
    assert client.changes == 3 and metric(pub, "shopnow_dns_publish_retries_total") == 2
    always, _ = publisher(zone, fail=99)
    assert always.publish(US_WEST_LOST) == "failed" and "Throttling" in always.state.last_error
    assert metric(always, "shopnow_dns_publish_total", outcome="failed") == 1


def test_a_refused_table_is_not_retried_until_it_changes(moto_url: str) -> None:
    pub, client = publisher((route53_test_client(moto_url), "ZNOSUCHZONE"))
    assert pub.publish(NORMAL) == "failed" and "NoSuchHostedZone" in pub.state.last_error
    assert pub.publish(NORMAL) == "unchanged"
    assert client.changes == 0  # listing the zone already failed: no change was sent


def test_the_worker_publishes_the_newest_offer_and_retries_it(zone: tuple[Any, str]) -> None:
    pub, client = publisher(zone, fail=5)  # 4 attempts per try: the first try fails, the second succeeds
    pub.start()
    try:
        pub.offer(NORMAL)
        wait_until(lambda: pub.state.published_version == 1, timeout=10, what="published after retries")
        pub.offer(NORMAL)  # unchanged: not even queued
        assert pub.status()["pending"] is False
    finally:
        pub.stop()
    assert client.changes == 6


@pytest.mark.parametrize(("env", "field"), [
    ({"REGIONCTL_DNS_ZONE": "Z1"}, "REGIONCTL_DNS_RECORD"),
    ({"REGIONCTL_DNS_ZONE": "Z1", "REGIONCTL_DNS_RECORD": "shop.example.com",
      "REGIONCTL_DNS_TARGETS": "us-east=1.2.3.4"}, "REGIONCTL_DNS_TARGETS"),
    ({"REGIONCTL_DNS_ZONE": "Z1", "REGIONCTL_DNS_RECORD": "shop.example.com",
      "REGIONCTL_DNS_TARGETS": "us-east=1.2.3.4,us-west=1.2.3.5,eu-west=x,mars=y"}, "REGIONCTL_DNS_TARGETS"),
    ({"REGIONCTL_DNS_ZONE": "Z1", "REGIONCTL_DNS_RECORD": "shop.example.com",
      "REGIONCTL_DNS_TARGETS": "us-east"}, "REGIONCTL_DNS_TARGETS"),
])
def test_bad_settings_name_the_variable(env: dict[str, str], field: str) -> None:
    with pytest.raises(InputError) as info:
        dns_settings_from_env(env, DEFAULT)
    assert info.value.field == field


def test_settings_from_env() -> None:
    assert dns_settings_from_env({}, DEFAULT) is None
    settings = dns_settings_from_env({"REGIONCTL_DNS_ZONE": "Z1", "REGIONCTL_DNS_RECORD": "shop.example.com",
                                      "REGIONCTL_DNS_TARGETS": "us-east=1.2.3.4, us-west=1.2.3.5,eu-west=eu.example",
                                      "REGIONCTL_DNS_ENDPOINT": "http://127.0.0.1:5000"}, DEFAULT)
    assert settings is not None and settings.endpoint_url == "http://127.0.0.1:5000"
    assert dict(settings.region_targets) == parse_targets("us-east=1.2.3.4,us-west=1.2.3.5,eu-west=eu.example", DEFAULT)


@pytest.fixture
def rig() -> Iterator[Rig]:
    yield from make_rig()


def changed_within(read: Callable[[], dict[str, dict[str, int]]], want: Callable[[dict[str, dict[str, int]]], bool],
                   *, timeout_s: float) -> float | None:
    """Seconds until Route 53 holds what `want` accepts (polled every 50 ms), or None if it never did."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if want(read()):
            return time.monotonic() - started
        time.sleep(0.05)
    return None


def test_a_region_loss_changes_the_records(rig: Rig, zone: tuple[Any, str], tmp_path: Path) -> None:
    """A running controller (default settings: 1 s probes, 3 failures) publishes as leader; us-west's
    cell stops answering; the delay until Route 53 gives it weight 0 is printed (target: 5 s)."""
    pub, client = publisher(zone, topology=rig.topology)
    store = SqliteStore(tmp_path / "control.db")
    ctl = rig.controller(store, settings=ControllerSettings(), dns=pub)
    stop = threading.Event()
    loop = threading.Thread(target=ctl.run, kwargs={"stop": stop.is_set}, daemon=True)
    loop.start()
    try:
        wait_until(lambda: pub.state.published_version > 0, timeout=30, what="the leader's first table in Route 53")
        us = pub.read()["us"]
        assert us["us-west"] > 0 and us["us-east"] > 0
        calls = client.changes
        time.sleep(2.5)  # steady rounds: the unchanged table is offered every round, and never sent
        assert client.changes == calls
        rig.cells["us-west"].stop()
        took = changed_within(pub.read, lambda w: w.get("us", {}).get("us-west") == 0, timeout_s=30)
        assert took is not None, "Route 53 never gave the lost region weight 0"
        table = json.loads(store.get(TABLE_KEY).value)  # type: ignore[union-attr]
        print(f"\nDNS-UPDATE: us-west lost -> Route 53 weight 0 after {took:.2f} s (probe 1 s, 3 failures; "
              f"Route 53 change calls {client.changes}, table v{table['version']})")
        text = ControllerMetrics(ctl).render()[0].decode()
        assert 'shopnow_dns_publish_total{outcome="published"}' in text
        assert f'shopnow_controller_writing{{controller="{ctl.holder}"}} 1.0' in text
    finally:
        stop.set()
        loop.join(timeout=10)
        store.close()


def test_the_delay_measurement_reports_a_publisher_that_never_publishes(zone: tuple[Any, str]) -> None:
    pub, _ = publisher(zone, fail=10_000)
    pub.start()
    try:
        pub.offer(US_WEST_LOST)
        assert changed_within(pub.read, lambda w: w.get("us", {}).get("us-west") == 0, timeout_s=1.0) is None
    finally:
        pub.stop()


def test_regionctl_dns_show_and_publish(zone: tuple[Any, str], moto_url: str, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch, rig: Rig) -> None:
    import typer
    from typer.testing import CliRunner

    from regionctl.dns_cmds import register

    _, zone_id = zone
    db = tmp_path / "control.db"
    with SqliteStore(db) as store:
        store.put(TABLE_KEY, json.dumps(NORMAL))
    app = typer.Typer()
    register(app)
    env = {"REGIONCTL_DNS_ZONE": zone_id, "REGIONCTL_DNS_RECORD": "shop.example.com",
           "REGIONCTL_DNS_TARGETS": ",".join(f"{r}={t}" for r, t in TARGETS.items()),
           "REGIONCTL_DNS_ENDPOINT": moto_url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "REGIONCTL_CONTROL_STORE": f"sqlite:///{db}", "REGIONCTL_TOPOLOGY": str(write_toml(rig.raw, tmp_path / "t.toml"))}
    runner = CliRunner()
    before = runner.invoke(app, ["dns", "show"], env=env)
    assert before.exit_code == 1, before.output  # nothing in Route 53 yet: differs from the table
    published = runner.invoke(app, ["dns", "publish"], env=env)
    assert published.exit_code == 0 and "published routing table v1" in published.output, published.output
    after = runner.invoke(app, ["dns", "show"], env=env)
    assert after.exit_code == 0 and "us-west" in after.output, after.output
