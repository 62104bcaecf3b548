"""The residency audit: does any region hold personal data of a user homed in another geography?

`regionctl residency audit [--json]` scans, for every region R of the topology:

- R's Redis, everything in it: every key name; every hash's fields and values; every stream
  entry's field values; every string value; every set, sorted-set and list member;
- every model bundle in R's cell bundle cache (`<state>/cells/<R>/bundles/*/`): every JSON file
  (users.json, golden.json, segments.json, ...) and the user list that user_embeddings.npy rows
  belong to (users.json);

and reports each user id whose home geography is not R's geography. User ids carry their
geography (`eu-123`, regions.geo.home_geography_of), so a user id is any token `<geo>-<rest>` of a
known geography that is not a region name (`ckpt:popularity:us-east:...` names a region, not a
user). Pseudonyms (`p-<hmac>`) and item ids (`sku-...`) are not user ids. The audit reads only;
it exits non-zero when it finds anything (regionctl/residency_cmds.py).

Pure parts: `user_ids_in` (tokens of a text) and `misplaced` (which of them may not be in a
region). The scanners do the I/O.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from regions.geo import home_geography_of
from regions.topology import Topology
from replication.redis_io import Redis, RedisError, text

SCAN_COUNT = 1000
"""Keys per SCAN and entries per XRANGE/HSCAN: bounded memory and reply size on big Redis instances."""
MAX_FINDINGS = 1000
"""Findings kept in the report (the count is always complete): enough to act on, bounded output."""


@dataclass(frozen=True)
class Finding:
    region: str
    kind: str
    """key | hash_field | hash_value | stream_entry | value | member | bundle_file"""
    where: str
    """The Redis key (and stream entry id or field), or the bundle file path."""
    user_id: str
    home_geography: str


@dataclass(frozen=True)
class AuditReport:
    findings: tuple[Finding, ...]
    total: int
    scanned: Mapping[str, Mapping[str, int]]
    """region -> {"keys": n, "stream_entries": n, "bundle_files": n}"""
    errors: tuple[str, ...] = ()

    @property
    def clean(self) -> bool:
        return self.total == 0 and not self.errors

    def to_json(self) -> dict[str, Any]:
        return {"clean": self.clean, "total_findings": self.total, "findings": [asdict(f) for f in self.findings],
                "scanned": {r: dict(v) for r, v in self.scanned.items()}, "errors": list(self.errors)}


def user_id_pattern(topology: Topology) -> re.Pattern[str]:
    geos = "|".join(sorted((re.escape(g) for g in topology.geographies), key=len, reverse=True))
    return re.compile(rf"(?<![A-Za-z0-9_.-])(?:{geos})-[A-Za-z0-9_]+(?:-[A-Za-z0-9_]+)*")


def user_ids_in(text: str, *, pattern: re.Pattern[str], topology: Topology) -> set[str]:
    """Pure. The user ids a text names (tokens `<geo>-...` that are not region names)."""
    return {m for m in pattern.findall(text) if m not in topology.regions}


def misplaced(user_ids: Iterable[str], *, topology: Topology, region: str) -> list[tuple[str, str]]:
    """Pure. (user id, home geography) of each user id that `region` may not hold."""
    return foreign_user_ids(user_ids, topology=topology, geography=topology.region(region).geography)


def foreign_user_ids(user_ids: Iterable[str], *, topology: Topology, geography: str) -> list[tuple[str, str]]:
    """Pure. (user id, home geography) of each user id not homed in `geography`, sorted."""
    geo = geography
    out = []
    for user_id in sorted(set(user_ids)):
        home = home_geography_of(user_id, topology)
        if home != geo:
            out.append((user_id, home))
    return out


def _text(value: Any) -> str:
    return text(value, errors="replace")


class _Collector:
    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.pattern = user_id_pattern(topology)
        self.findings: list[Finding] = []
        self.total = 0

    def check(self, *, region: str, kind: str, where: str, text: str) -> None:
        if "-" not in text:
            return
        for user_id, home in misplaced(user_ids_in(text, pattern=self.pattern, topology=self.topology),
                                       topology=self.topology, region=region):
            self.total += 1
            if len(self.findings) < MAX_FINDINGS:
                self.findings.append(Finding(region=region, kind=kind, where=where, user_id=user_id, home_geography=home))


def _scan_redis(client: Redis, region: str, out: _Collector) -> dict[str, int]:
    keys = entries = 0
    for raw_key in client.scan_iter(count=SCAN_COUNT):
        key = _text(raw_key)
        keys += 1
        out.check(region=region, kind="key", where=key, text=key)
        kind = _text(client.type(raw_key))
        if kind == "string":
            value = client.get(raw_key)
            if value is not None:
                out.check(region=region, kind="value", where=key, text=_text(value))
        elif kind == "hash":
            for field, value in client.hscan_iter(raw_key, count=SCAN_COUNT):
                out.check(region=region, kind="hash_field", where=f"{key} field {_text(field)}", text=_text(field))
                out.check(region=region, kind="hash_value", where=f"{key} field {_text(field)}", text=_text(value))
        elif kind == "stream":
            for entry_id, fields in _stream_entries(client, raw_key):
                entries += 1
                line = " ".join(f"{_text(k)}={_text(v)}" for k, v in fields.items())
                out.check(region=region, kind="stream_entry", where=f"{key} {_text(entry_id)}", text=line)
        elif kind == "set":
            for member in client.sscan_iter(raw_key, count=SCAN_COUNT):
                out.check(region=region, kind="member", where=key, text=_text(member))
        elif kind == "zset":
            for member, _score in client.zscan_iter(raw_key, count=SCAN_COUNT):
                out.check(region=region, kind="member", where=key, text=_text(member))
        elif kind == "list":
            for start in range(0, int(client.llen(raw_key)), SCAN_COUNT):
                for member in client.lrange(raw_key, start, start + SCAN_COUNT - 1):
                    out.check(region=region, kind="member", where=key, text=_text(member))
    return {"keys": keys, "stream_entries": entries}


def _stream_entries(client: Redis, key: Any) -> Iterator[tuple[Any, Mapping[Any, Any]]]:
    start = "-"
    while True:
        chunk = client.xrange(key, min=start, count=SCAN_COUNT)
        yield from chunk
        if len(chunk) < SCAN_COUNT:
            return
        start = f"({_text(chunk[-1][0])}"


def bundle_cache_dir(state_dir: Path, region: str) -> Path:
    """Where the cell of `region` caches bundles (serving.cell_main.build_runtime)."""
    return state_dir / "cells" / region / "bundles"


def _scan_bundles(cache: Path, region: str, out: _Collector) -> int:
    files = 0
    if not cache.is_dir():
        return 0
    for path in sorted(cache.rglob("*.json")):
        if not path.is_file():
            continue
        files += 1
        try:
            text = path.read_text(errors="replace")
        except OSError as exc:
            raise OSError(f"cannot read {path}: {exc}") from exc
        if path.name == "users.json":  # the rows of user_embeddings.npy
            try:
                rows = json.loads(text)
                text = " ".join(str(r.get("user_id", "")) if isinstance(r, dict) else str(r) for r in rows)
            except (ValueError, TypeError):
                pass  # scanned as plain text below
        out.check(region=region, kind="bundle_file", where=str(path), text=text)
    return files


def audit(topology: Topology, clients: Mapping[str, Redis], *, state_dir: Path | None) -> AuditReport:
    """Scan every region's Redis and every cell's bundle cache under `state_dir` (None: Redis only)."""
    out = _Collector(topology)
    scanned: dict[str, dict[str, int]] = {}
    errors: list[str] = []
    for region in sorted(topology.regions):
        counts: dict[str, int] = {"keys": 0, "stream_entries": 0, "bundle_files": 0}
        try:
            counts.update(_scan_redis(clients[region], region, out))
        except RedisError as exc:
            errors.append(f"region {region}: Redis not audited: {exc}; run the audit again when it is reachable")
        if state_dir is not None:
            try:
                counts["bundle_files"] = _scan_bundles(bundle_cache_dir(state_dir, region), region, out)
            except OSError as exc:
                errors.append(f"region {region}: bundle cache not audited: {exc}")
        scanned[region] = counts
    return AuditReport(findings=tuple(out.findings), total=out.total, scanned=scanned, errors=tuple(errors))


__all__ = ["AuditReport", "Finding", "audit", "bundle_cache_dir", "foreign_user_ids", "misplaced", "user_id_pattern", "user_ids_in"]
