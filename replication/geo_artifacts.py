"""Per-geography model bundles: one artifact store, one current pointer per geography.

A geography's bundles live under `<store>/geo/<geography>/` (a directory of the local store, a
key prefix in S3), which is a whole artifact store of its own: its bundles, its `pointer.json`
and its history. So `promote`, `rollback`, `list` and `verify` keep their meaning per geography,
and a cell opens only its own geography's store (serving.cell_main): it cannot load a bundle of
another geography, and no US process ever fetches an EU bundle.

The store's root keeps no current pointer of its own once bundles are per geography.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

from regions.errors import InputError
from regions.topology import Topology
from replication.artifact_store import ArtifactStore
from replication.artifact_stores import store_from_url

GEO_DIR = "geo"
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")


def geo_store_url(base_url: str, geography: str) -> str:
    """The URL of `geography`'s store inside the store at `base_url`."""
    if not _NAME.match(geography or ""):
        raise InputError("geography", f"{geography!r} is not a geography name (lowercase letters, digits, '-')")
    return f"{base_url.rstrip('/')}/{GEO_DIR}/{geography}"


def open_geo_store(base_url: str, geography: str, *, topology: Topology | None = None,
                   endpoint_url: str | None = None) -> ArtifactStore:
    """`geography`'s artifact store; with a topology, the geography must be one of it."""
    if topology is not None:
        topology.geography(geography)  # an unknown geography: TopologyError naming the allowed ones
    return store_from_url(geo_store_url(base_url, geography), endpoint_url=endpoint_url)


def current_bundle(store: ArtifactStore) -> tuple[str | None, Mapping[str, Any] | None]:
    """(version, manifest metrics) of the store's current bundle; (None, None) when none is current."""
    version = store.current()
    if version is None:
        return None, None
    info = next((i for i in store.list() if i.version == version), None)
    return version, (dict(info.metrics) if info is not None else {})


__all__ = ["GEO_DIR", "current_bundle", "geo_store_url", "open_geo_store"]
