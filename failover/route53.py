"""Publish the routing weights as Route 53 weighted records (the DNS face of the same decision).

One weighted record set per (geography, region): name `<geo>.<record_name>`, SetIdentifier =
region, Weight = the table's weight, value = `region_targets[region]` (an A record for an IP
address, else a CNAME). A geography routed anonymously to another geography is published with
its actual targets (the other geography's regions). Weighted records of the name that the new
table no longer lists are set to weight 0, not deleted, so failback is only a weight change and
no stale record keeps traffic. Every change goes in one UPSERT batch per call (atomic in Route 53).

The change batch is built by a pure function (`weighted_changes`); `publish_weights` and
`read_weights` are the thin boto3 adapter. botocore errors are mapped here and raised `from` the
original: a missing zone or a batch Route 53 calls invalid is a PermanentError (retrying cannot
help), anything else (throttling, connection, server errors) a TemporaryError.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Mapping

from contracts.routing_table import RoutingTable
from regions.errors import InputError, PermanentError, TemporaryError

DEFAULT_TTL_S = 30
"""Resolvers cache a weighted answer this long: 30 s keeps DNS steering within the RTO target of
seconds-to-a-minute without multiplying query volume."""
_PERMANENT_CODES = frozenset({"NoSuchHostedZone", "InvalidChangeBatch", "InvalidInput", "AccessDenied",
                              "InvalidDomainName"})
_BATCH_LIMIT = 1000
"""Route 53 accepts at most 1000 changes per ChangeResourceRecordSets call."""


@dataclass(frozen=True, kw_only=True)
class WeightedRecord:
    name: str
    region: str
    weight: int
    target: str
    ttl: int = DEFAULT_TTL_S

    @property
    def type(self) -> str:
        try:
            ipaddress.ip_address(self.target)
        except ValueError:
            return "CNAME"
        return "A"

    def change(self) -> dict[str, Any]:
        return {"Action": "UPSERT", "ResourceRecordSet": {
            "Name": self.name, "Type": self.type, "SetIdentifier": self.region, "Weight": self.weight,
            "TTL": self.ttl, "ResourceRecords": [{"Value": self.target}]}}


@dataclass(frozen=True, kw_only=True)
class PublishResult:
    change_id: str
    status: str
    records: tuple[WeightedRecord, ...]


def record_name_for(geography: str, record_name: str) -> str:
    return f"{geography}.{record_name.rstrip('.')}."


def weighted_changes(table: RoutingTable, *, record_name: str, region_targets: Mapping[str, str],
                     existing: Mapping[str, Mapping[str, str]] | None = None,
                     ttl: int = DEFAULT_TTL_S) -> tuple[WeightedRecord, ...]:
    """The records to UPSERT for `table`. `existing`: {record name: {set id: target}} now in the zone;
    those the table no longer lists get weight 0 (their target kept)."""
    if not record_name or not record_name.strip("."):
        raise InputError("record_name", "must be a DNS name such as shop.example.com")
    if not 0 <= ttl <= 2_147_483_647:
        raise InputError("ttl", f"must be 0..2147483647 seconds, got {ttl}")
    existing = existing or {}
    records = []
    for geo in sorted(table.geos):
        name = record_name_for(geo, record_name)
        route = table.geos[geo]
        for region, weight in sorted(route.regions.items()):
            if region not in region_targets:
                raise InputError("region_targets", f"no target for region {region!r} (routing table version "
                                                   f"{table.version}, geography {geo}); give one per region")
            if not 0 <= weight <= 255:
                raise InputError(f"geos.{geo}.regions.{region}", f"Route 53 weights are 0..255, got {weight}")
            records.append(WeightedRecord(name=name, region=region, weight=weight, target=region_targets[region], ttl=ttl))
        for region, target in sorted(existing.get(name, {}).items()):
            if region not in route.regions:
                records.append(WeightedRecord(name=name, region=region, weight=0, target=target, ttl=ttl))
    return tuple(records)


def map_route53_error(exc: Exception, what: str) -> Exception:
    """botocore error -> PermanentError (zone missing, batch invalid) or TemporaryError (the rest)."""
    code = ""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = str(response.get("Error", {}).get("Code", ""))
    if code in _PERMANENT_CODES:
        return PermanentError(f"Route 53 refused {what} ({code}): {exc}; check the hosted zone id and record name")
    return TemporaryError(f"Route 53 unavailable during {what} ({code or type(exc).__name__}): {exc}; retry shortly",
                          delay=2.0)


def _existing(client: Any, *, hosted_zone_id: str, names: set[str]) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    paginator = client.get_paginator("list_resource_record_sets")
    for page in paginator.paginate(HostedZoneId=hosted_zone_id):
        for rrset in page["ResourceRecordSets"]:
            name = rrset["Name"]
            if name in names and "SetIdentifier" in rrset and "Weight" in rrset and rrset.get("ResourceRecords"):
                found.setdefault(name, {})[rrset["SetIdentifier"]] = rrset["ResourceRecords"][0]["Value"]
    return found


def publish_weights(table: RoutingTable, *, client: Any, hosted_zone_id: str, record_name: str,
                    region_targets: Mapping[str, str], ttl: int = DEFAULT_TTL_S) -> PublishResult:
    """UPSERT one weighted record set per (geography, region) of `table` (see the module docstring)."""
    from botocore.exceptions import BotoCoreError, ClientError

    names = {record_name_for(g, record_name) for g in table.geos}
    try:
        existing = _existing(client, hosted_zone_id=hosted_zone_id, names=names)
    except (BotoCoreError, ClientError) as exc:
        raise map_route53_error(exc, f"listing records of zone {hosted_zone_id}") from exc
    records = weighted_changes(table, record_name=record_name, region_targets=region_targets, existing=existing, ttl=ttl)
    if len(records) > _BATCH_LIMIT:
        raise InputError("routing table", f"{len(records)} records exceed Route 53's {_BATCH_LIMIT} changes per batch")
    comment = f"shopnow routing table version {table.version}"
    try:
        info = client.change_resource_record_sets(HostedZoneId=hosted_zone_id, ChangeBatch={
            "Comment": comment, "Changes": [r.change() for r in records]})["ChangeInfo"]
    except (BotoCoreError, ClientError) as exc:
        raise map_route53_error(exc, f"publishing {comment}") from exc
    return PublishResult(change_id=info["Id"], status=info["Status"], records=records)


def read_weights(*, client: Any, hosted_zone_id: str, record_name: str) -> dict[str, dict[str, int]]:
    """{geography: {region: weight}} as Route 53 holds them now (names `<geo>.<record_name>`)."""
    from botocore.exceptions import BotoCoreError, ClientError

    suffix = "." + record_name.rstrip(".") + "."
    out: dict[str, dict[str, int]] = {}
    try:
        for page in client.get_paginator("list_resource_record_sets").paginate(HostedZoneId=hosted_zone_id):
            for rrset in page["ResourceRecordSets"]:
                if rrset["Name"].endswith(suffix) and "SetIdentifier" in rrset and "Weight" in rrset:
                    geo = rrset["Name"][: -len(suffix)]
                    out.setdefault(geo, {})[rrset["SetIdentifier"]] = int(rrset["Weight"])
    except (BotoCoreError, ClientError) as exc:
        raise map_route53_error(exc, f"reading records of zone {hosted_zone_id}") from exc
    return {g: dict(sorted(w.items())) for g, w in sorted(out.items())}
