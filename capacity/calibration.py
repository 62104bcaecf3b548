"""Read and write the calibration file (format: docs/interfaces.md, "Capacity calibration").

    {"machine": str, "measured_at": float,
     "tiers": {"full": {"cpu_ms": float, "p99_ms": float}, "cached": {...}, "segment": {...}, "popularity": {...}},
     "saturation_qps": float, "source": str (optional, "measured" when absent)}

The serving benchmark writes var/calibration.json. Until it has, the planner uses
capacity/default_calibration.json, whose "source" says "assumed, not measured".
The environment is not read here: entry points resolve --calibration / REGIONCTL_CALIBRATION with
contracts.environment.calibration_path and pass the path.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from capacity.model import Calibration, TierCost, require_number
from contracts.tiers import TIER_NAMES
from regions.errors import InputError
from regions.topology import REPO_ROOT

DEFAULT_CALIBRATION_PATH = Path(__file__).resolve().parent / "default_calibration.json"
"""Shipped with the package: assumed costs, clearly marked as such."""
MEASURED_CALIBRATION_PATH = REPO_ROOT / "var" / "calibration.json"
"""Where the serving benchmark writes what it measured."""
ASSUMED = "assumed, not measured"


def parse_calibration(raw: Any) -> Calibration:
    """Build a Calibration from the parsed JSON document; InputError names the bad field."""
    if not isinstance(raw, Mapping):
        raise InputError("calibration", f"must be a JSON object, got {type(raw).__name__}")
    for key in ("machine", "measured_at", "tiers", "saturation_qps"):
        if key not in raw:
            raise InputError(key, "missing from the calibration file; see docs/interfaces.md for the format")
    machine = raw["machine"]
    if not isinstance(machine, str) or not machine:
        raise InputError("machine", f"must be a non-empty string, got {machine!r}")
    source = raw.get("source", "measured")
    if not isinstance(source, str) or not source:
        raise InputError("source", f"must be a non-empty string, got {source!r}")
    tiers_raw = raw["tiers"]
    if not isinstance(tiers_raw, Mapping):
        raise InputError("tiers", "must be an object mapping tier name to {cpu_ms, p99_ms}")
    unknown = sorted(set(tiers_raw) - set(TIER_NAMES))
    if unknown:
        raise InputError(f"tiers.{unknown[0]}", f"unknown tier; allowed: {', '.join(TIER_NAMES)}")
    tiers: dict[str, TierCost] = {}
    for name in TIER_NAMES:
        body = tiers_raw.get(name)
        if not isinstance(body, Mapping):
            raise InputError(f"tiers.{name}", "missing or not an object {cpu_ms, p99_ms}; every tier needs a cost")
        for key in ("cpu_ms", "p99_ms"):
            if key not in body:
                raise InputError(f"tiers.{name}.{key}", "missing")
        tiers[name] = TierCost(
            cpu_ms=require_number(f"tiers.{name}.cpu_ms", body["cpu_ms"], inclusive=False),
            p99_ms=require_number(f"tiers.{name}.p99_ms", body["p99_ms"]),
        )
    return Calibration(
        machine=machine,
        measured_at=require_number("measured_at", raw["measured_at"]),
        tiers=tiers,
        saturation_qps=require_number("saturation_qps", raw["saturation_qps"]),
        source=source,
    )


def calibration_to_dict(calibration: Calibration) -> dict[str, Any]:
    """The JSON document for a Calibration (inverse of parse_calibration)."""
    return {
        "machine": calibration.machine,
        "measured_at": calibration.measured_at,
        "source": calibration.source,
        "tiers": {t: {"cpu_ms": c.cpu_ms, "p99_ms": c.p99_ms} for t, c in calibration.tiers.items()},
        "saturation_qps": calibration.saturation_qps,
    }


def default_calibration_path() -> Path:
    """var/calibration.json once a benchmark wrote it, else the shipped default."""
    if MEASURED_CALIBRATION_PATH.exists():
        return MEASURED_CALIBRATION_PATH
    return DEFAULT_CALIBRATION_PATH


def load_calibration(path: Path | str | None = None) -> Calibration:
    """Read and validate a calibration file (the default one when `path` is None)."""
    path = Path(path) if path is not None else default_calibration_path()
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise InputError("calibration", f"file {path} does not exist; run the serving benchmark or pass --calibration") from exc
    except OSError as exc:
        raise InputError("calibration", f"cannot read {path}: {exc.strerror or exc}; pass a readable JSON file") from exc
    except json.JSONDecodeError as exc:
        raise InputError("calibration", f"{path} is not valid JSON: {exc}") from exc
    return parse_calibration(raw)


def write_calibration(calibration: Calibration, path: Path | str = MEASURED_CALIBRATION_PATH) -> Path:
    """Write atomically (temp file + rename) so a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(calibration_to_dict(calibration), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path
