"""check_residency: a geography's bundle names no user of another geography, and says which it is for."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from regions.topology import load_topology
from replication.verifying import parse_manifest
from serving.bundle import BundleCheckError
from serving.bundle_residency import residency_check

TOPOLOGY = load_topology()


def _manifest(bundle: Path):  # type: ignore[no-untyped-def]
    return parse_manifest((bundle / "manifest.json").read_bytes())


def test_own_bundles_pass_and_each_kind_of_foreign_content_is_refused(tmp_path: Path, tiny_geo_bundles: dict[str, Path]) -> None:
    for geo, bundle in tiny_geo_bundles.items():
        residency_check(TOPOLOGY, geo)(bundle, _manifest(bundle))
        users = json.loads((bundle / "users.json").read_text())
        assert users and all(u["user_id"].startswith(f"{geo}-") for u in users)
    with pytest.raises(BundleCheckError) as wrong_geo:
        residency_check(TOPOLOGY, "us")(tiny_geo_bundles["eu"], _manifest(tiny_geo_bundles["eu"]))
    assert wrong_geo.value.check == "residency" and wrong_geo.value.file == "manifest.json"
    for name, poison in (("users.json", lambda t: t.replace('"us-', '"eu-', 1)),
                         ("golden.json", lambda t: t.replace('"user_id": "us-', '"user_id": "eu-', 1))):
        copy = tmp_path / name
        shutil.copytree(tiny_geo_bundles["us"], copy)
        text = (copy / name).read_text()
        assert poison(text) != text
        (copy / name).write_text(poison(text))
        with pytest.raises(BundleCheckError) as leaked:
            residency_check(TOPOLOGY, "us")(copy, _manifest(copy))
        assert leaked.value.file == name and "check_residency" in str(leaked.value) and "homed in 'eu'" in str(leaked.value)
