"""The edge's last resort: its own popularity list, served when no cell answers in time."""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regions.errors import InputError, ShopNowError

PACKAGED_LAST_RESORT = Path(__file__).with_name("last_resort_popularity.json")
"""Shipped with the package: the top items of the demo marketplace (seed 7), so that the homepage
is never empty even when no artifact store can be read at start."""


@dataclass(frozen=True, kw_only=True)
class LastResort:
    items: tuple[str, ...]
    source: str
    """Where the list came from: "bundle <version>", a file path, or "packaged"."""
    note: str = ""
    """Why a preferred source was not used ("" when it was)."""


def _read_list(path: Path) -> tuple[str, ...]:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError("last_resort", f"cannot read a JSON list of item ids from {path}: {exc}") from exc
    if not isinstance(raw, list) or not raw or not all(isinstance(i, str) and i for i in raw):
        raise InputError("last_resort", f"{path} must hold a non-empty JSON list of item id strings")
    return tuple(dict.fromkeys(raw))


def load_last_resort(*, artifacts_url: str | None = None, path: Path | None = None,
                     s3_endpoint: str | None = None) -> LastResort:
    """The newest bundle's popularity.json (current pointer, else newest published, checksums
    verified), else the list at `path`, else the packaged list. Never raises for a missing store."""
    notes = []
    if artifacts_url:
        from replication.artifact_stores import store_from_url
        from replication.verifying import verify_integrity

        try:
            store = store_from_url(artifacts_url, endpoint_url=s3_endpoint)
            version = store.current() or max(store.list(), key=lambda b: (b.created_at, b.version)).version
            with tempfile.TemporaryDirectory(prefix="edge-bundle-") as tmp:
                bundle = store.fetch(version, Path(tmp) / version)
                verify_integrity(bundle)
                return LastResort(items=_read_list(bundle / "popularity.json"), source=f"bundle {version}")
        except (ShopNowError, ValueError, OSError) as exc:  # ValueError: max() of an empty store
            notes.append(f"artifact store {artifacts_url}: {exc}")
    if path is not None:
        try:
            return LastResort(items=_read_list(path), source=str(path), note="; ".join(notes))
        except InputError as exc:
            notes.append(str(exc))
    return LastResort(items=_read_list(PACKAGED_LAST_RESORT), source="packaged", note="; ".join(notes))


def last_resort_answer(last: LastResort, *, count: int) -> dict[str, Any]:
    """The edge's own answer: never empty, says tier "edge-popularity" and region "edge"."""
    return {"items": [{"item_id": i, "score": round(1.0 / (1 + n), 6)} for n, i in enumerate(last.items[:count])],
            "tier": "edge-popularity", "region": "edge", "bundle_version": last.source, "skipped": [],
            "stale": False, "latency_ms": 0.0,
            "experiment": "", "arm": ""}
