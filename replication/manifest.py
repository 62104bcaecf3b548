"""Bundle manifests: what a model bundle contains, with the SHA-256 and size of every file.

manifest.json (format 1):
    {
      "format": 1,
      "bundle_version": "20261125T120000Z-ab12cd34",
      "created_at": 1764072000.0,
      "schema_version": 1,                 # feature schema version (serving.features)
      "data_watermark": 1764000000.0,      # newest event time used for training
      "metrics": {...},                    # offline evaluation, free-form JSON
      "files": {"ranker.txt": {"sha256": "...", "size": 1234}, ...}
    }

Pure helpers here; reading/writing stores is replication.artifact_store, checks are
replication.verifying.
"""
from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
_CHUNK = 1 << 20


@dataclass(frozen=True)
class FileEntry:
    sha256: str
    size: int


@dataclass(frozen=True)
class Manifest:
    bundle_version: str
    created_at: float
    schema_version: int
    data_watermark: float
    files: Mapping[str, FileEntry]
    metrics: Mapping[str, Any] = field(default_factory=dict)
    format: int = MANIFEST_FORMAT

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": self.format, "bundle_version": self.bundle_version, "created_at": self.created_at,
                "schema_version": self.schema_version, "data_watermark": self.data_watermark,
                "metrics": self.metrics,
                "files": {n: {"sha256": e.sha256, "size": e.size} for n, e in sorted(self.files.items())},
            },
            indent=2, sort_keys=True,
        )


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def new_bundle_version(now: float) -> str:
    """Sortable by time, unique by suffix: 20261125T120000Z-ab12cd34."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now)) + "-" + uuid.uuid4().hex[:8]


def bundle_files(bundle_dir: Path) -> list[str]:
    """Relative paths of every file in the bundle except the manifest, sorted."""
    return sorted(
        p.relative_to(bundle_dir).as_posix() for p in bundle_dir.rglob("*") if p.is_file() and p.name != MANIFEST_NAME
    )


def build_manifest(
    bundle_dir: Path, *, bundle_version: str, created_at: float, schema_version: int,
    data_watermark: float, metrics: Mapping[str, Any],
) -> Manifest:
    files = {name: FileEntry(sha256=sha256_file(bundle_dir / name), size=(bundle_dir / name).stat().st_size) for name in bundle_files(bundle_dir)}
    return Manifest(
        bundle_version=bundle_version, created_at=created_at, schema_version=schema_version,
        data_watermark=data_watermark, files=files, metrics=dict(metrics),
    )


def write_manifest(bundle_dir: Path, manifest: Manifest) -> Path:
    path = bundle_dir / MANIFEST_NAME
    tmp = path.with_suffix(".tmp")
    tmp.write_text(manifest.to_json())
    tmp.replace(path)
    return path
