"""The calibration file: the shipped assumed default, round trips, and bad files naming the field."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from capacity.calibration import (
    ASSUMED,
    DEFAULT_CALIBRATION_PATH,
    calibration_to_dict,
    default_calibration_path,
    load_calibration,
    parse_calibration,
    write_calibration,
)
from contracts.environment import calibration_path
from contracts.tiers import TIER_NAMES
from regions.errors import InputError

GOOD: dict[str, Any] = {
    "machine": "bench-16vcpu",
    "measured_at": 1_700_000_000.0,
    "tiers": {t: {"cpu_ms": c, "p99_ms": 10.0} for t, c in zip(TIER_NAMES, (30.0, 2.0, 1.0, 0.4))},
    "saturation_qps": 533.0,
}


def test_shipped_default_is_marked_assumed() -> None:
    raw = json.loads(DEFAULT_CALIBRATION_PATH.read_text())
    assert raw["source"] == ASSUMED == "assumed, not measured"
    cal = load_calibration(DEFAULT_CALIBRATION_PATH)
    assert cal.source == ASSUMED
    assert cal.cheapest_tier == "popularity"


def test_a_benchmark_file_without_source_reads_as_measured(tmp_path: Path) -> None:
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(GOOD))
    cal = load_calibration(path)
    assert cal.source == "measured" and cal.cpu_ms("full") == 30.0


def test_write_then_load_round_trips(tmp_path: Path) -> None:
    cal = parse_calibration(GOOD)
    path = write_calibration(cal, tmp_path / "var" / "calibration.json")
    assert load_calibration(path) == cal
    assert calibration_to_dict(load_calibration(path)) == {**GOOD, "source": "measured"}
    assert [p.name for p in path.parent.iterdir()] == ["calibration.json"]  # no temp file left


def _without(path: list[str]) -> dict[str, Any]:
    doc = copy.deepcopy(GOOD)
    node = doc
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return doc


def _with(path: list[str], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(GOOD)
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        (_without(["machine"]), "machine"),
        (_without(["tiers", "segment"]), "tiers.segment"),
        (_without(["tiers", "full", "cpu_ms"]), "tiers.full.cpu_ms"),
        (_with(["tiers", "full", "cpu_ms"], -1.0), "tiers.full.cpu_ms"),
        (_with(["tiers", "full", "cpu_ms"], 0), "tiers.full.cpu_ms"),
        (_with(["tiers", "cached", "p99_ms"], "fast"), "tiers.cached.p99_ms"),
        (_with(["tiers", "turbo"], {"cpu_ms": 1, "p99_ms": 1}), "tiers.turbo"),
        (_with(["saturation_qps"], -3), "saturation_qps"),
        (_with(["source"], ""), "source"),
        ([1, 2], "calibration"),
    ],
)
def test_bad_calibration_names_the_field(doc: Any, field: str) -> None:
    with pytest.raises(InputError) as err:
        parse_calibration(doc)
    assert err.value.field == field


def test_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist") as err:
        load_calibration(tmp_path / "nope.json")
    assert isinstance(err.value.__cause__, FileNotFoundError)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON") as err:
        load_calibration(broken)
    assert isinstance(err.value.__cause__, json.JSONDecodeError)


def test_the_entry_point_path_prefers_the_flag_then_the_environment(tmp_path: Path) -> None:
    env = {"REGIONCTL_CALIBRATION": str(tmp_path / "c.json")}
    assert calibration_path(env) == tmp_path / "c.json"
    assert calibration_path(env, tmp_path / "flag.json") == tmp_path / "flag.json"
    assert calibration_path({}) is None
    assert default_calibration_path().name in ("calibration.json", "default_calibration.json")


def test_a_directory_is_not_a_calibration(tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        load_calibration(tmp_path)
    assert err.value.field == "calibration" and isinstance(err.value.__cause__, OSError)
