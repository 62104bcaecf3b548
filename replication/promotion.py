"""Promotion: fetch a stored bundle to a scratch directory, verify it fully (replication.verifying)
and only then move the store's "current" pointer: a refused bundle never becomes current.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Collection, Iterable

from replication.artifact_store import ArtifactStore
from replication.manifest import MANIFEST_NAME, Manifest
from replication.verifying import BundleRejected, SemanticCheck, check_version, verify_bundle


def promote_verified(
    store: ArtifactStore, version: str, *, supported_schema_versions: Collection[int],
    semantic_checks: Iterable[SemanticCheck] = (), scratch_dir: Path | None = None,
) -> Manifest:
    """Fetch `version`, verify it fully, then make it current. A refused bundle is never promoted."""
    check_version(version)
    with tempfile.TemporaryDirectory(prefix="verify-", dir=scratch_dir) as tmp:
        local = store.fetch(version, Path(tmp))
        manifest = verify_bundle(local, supported_schema_versions=supported_schema_versions, semantic_checks=semantic_checks)
    if manifest.bundle_version != version:
        raise BundleRejected(
            file=MANIFEST_NAME, check="bundle_version",
            detail=f"stored as {version} but the manifest says {manifest.bundle_version}",
        )
    store.promote(version)
    return manifest
