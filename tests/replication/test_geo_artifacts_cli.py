"""`regionctl artifacts ... --geo G`: one store and one current pointer per geography; promotion
into a geography's store runs the residency check, which refuses another geography's bundle."""
from __future__ import annotations

import json
from pathlib import Path

from tests.replication.test_artifacts_cli import run


def test_each_geography_has_its_own_pointer_and_refuses_foreign_bundles(tmp_path: Path, tiny_geo_bundles: dict[str, Path]) -> None:
    store = (tmp_path / "store").as_uri()
    us, eu = tiny_geo_bundles["us"], tiny_geo_bundles["eu"]
    version = json.loads((us / "manifest.json").read_text())["bundle_version"]
    for geo, bundle in (("us", us), ("eu", eu)):
        code, out, err = run("publish", str(bundle), "--store", store, "--geo", geo)
        assert code == 0, err
        assert f"--geo {geo}" in out
    code, out, err = run("promote", version, "--store", store, "--geo", "us")
    assert code == 0 and "is current" in out and "check_residency" in out, err
    code, out, _ = run("list", "--store", store, "--geo", "us")
    assert code == 0 and "current" in out and version in out
    code, out, _ = run("list", "--store", store, "--geo", "eu")
    assert code == 0 and "current" not in out.replace("make it current", "")  # eu: published, not promoted

    # The eu bundle published into the us store: verification refuses it, naming its own check.
    code, _, err = run("publish", str(eu), "--store", (tmp_path / "other").as_uri(), "--geo", "us")
    assert code == 0
    code, _, err = run("promote", version, "--store", (tmp_path / "other").as_uri(), "--geo", "us")
    assert code == 2 and "failed the residency check" in err and "check_residency" in err and "'eu'" in err
    code, _, err = run("verify", str(eu), "--geo", "us")
    assert code == 2 and "check_residency" in err
    code, out, err = run("verify", str(eu), "--geo", "eu")
    assert code == 0, err

    code, _, err = run("list", "--store", store, "--geo", "mars")
    assert code == 2 and "unknown geography 'mars'" in err
    code, _, err = run("rollback", "--store", store, "--geo", "us")
    assert code == 2 and "nothing to roll back to" in err
