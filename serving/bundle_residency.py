"""The bundle residency check: a geography's bundle holds no user id of another geography.

`residency_check(topology, geography)` is a semantic check (replication.verifying) named
`check_residency`; it refuses, with BundleCheckError(check="residency"), a bundle that

- does not declare `geography` in its manifest metrics (written by `regionctl train`), or
- names, in any of its JSON files (users.json, whose rows are user_embeddings.npy's, golden.json,
  segments.json, ...), a user id homed in another geography (replication.residency_audit's notion
  of a user id: a `<geo>-...` token that is not a region name).

A cell verifies its geography's bundles with it (serving.cell_main), and so do
`regionctl artifacts verify|promote --geo G`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from regions.topology import Topology
from replication.manifest import MANIFEST_NAME, Manifest
from replication.residency_audit import foreign_user_ids, user_id_pattern, user_ids_in
from serving.bundle import BundleCheckError

GEOGRAPHY_METRIC = "geography"
"""Manifest metrics key: the geography whose users' events the bundle was trained on."""


def residency_check(topology: Topology, geography: str) -> Callable[[Path, Manifest], None]:
    topology.geography(geography)
    pattern = user_id_pattern(topology)

    def check_residency(bundle_dir: Path, manifest: Manifest) -> None:
        declared = manifest.metrics.get(GEOGRAPHY_METRIC)
        if declared != geography:
            raise BundleCheckError(file=MANIFEST_NAME, check="residency", message=(
                f"check_residency: the bundle is for geography {declared!r}, not {geography!r}: a cell loads only "
                f"bundles trained on its own geography's users (regionctl train --geo {geography})"))
        for name in sorted(manifest.files):
            if not name.endswith(".json"):
                continue
            try:
                text = (bundle_dir / name).read_text(errors="replace")
            except OSError as exc:
                raise BundleCheckError(file=name, check="residency", message=f"check_residency: cannot read: {exc}") from exc
            foreign = foreign_user_ids(user_ids_in(text, pattern=pattern, topology=topology), topology=topology, geography=geography)
            if foreign:
                user, home = foreign[0]
                raise BundleCheckError(file=name, check="residency", message=(
                    f"check_residency: a {geography} bundle holds {len(foreign)} user id(s) of other geographies "
                    f"(first: {user!r}, homed in {home!r}); personal data stays in its geography: retrain with "
                    f"regionctl train --geo {geography}"))

    return check_residency


__all__ = ["GEOGRAPHY_METRIC", "residency_check"]
