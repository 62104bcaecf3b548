"""`regionctl rollout` and `regionctl experiments` on real stores (SQLite control store, file
artifact store with a real bundle): bad input is refused naming the field and changes nothing."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from failover.sqlite_store import SqliteStore
from regionctl.main import build_app
from tests.stack_helpers import publish_geo_bundles


@pytest.fixture
def env(tmp_path: Path, tiny_geo_bundles: dict[str, Path]) -> dict[str, Any]:
    root = tmp_path / "artifacts"
    versions = publish_geo_bundles(tiny_geo_bundles, root)
    return {"store": root.resolve().as_uri(), "control": f"sqlite:///{tmp_path / 'control.db'}", "versions": versions,
            "db": tmp_path / "control.db"}


def _cli(env: dict[str, Any], *args: str, store: bool = True) -> Any:
    extra = ["--store", env["store"]] if store else []
    return CliRunner().invoke(build_app(), [*args, "--control-store", env["control"], *extra])


def _keys(env: dict[str, Any]) -> list[str]:
    with SqliteStore(env["db"]) as s:
        return sorted(k for k in s.list("") if k.startswith(("rollout/", "experiments/")))


def test_rollout_start_refuses_bad_input_and_changes_nothing(env: dict[str, Any]) -> None:
    for args, field in ((["rollout", "start", "nope", "--geo", "us"], "nope"),
                        (["rollout", "start", "x", "--geo", "mars"], "mars"),
                        (["rollout", "start", env["versions"]["us"], "--geo", "us"], "already serving"),
                        (["rollout", "start", env["versions"]["us"], "--geo", "us", "--hold", "soon"], "hold")):
        result = _cli(env, *args)
        assert result.exit_code == 2 and field in result.output, result.output
    assert _keys(env) == []


def test_rollout_start_status_abort(env: dict[str, Any], tiny_geo_bundles: dict[str, Path], tmp_path: Path) -> None:
    from replication.geo_artifacts import open_geo_store
    from serving.weak_bundle import weaken_bundle

    weaken_bundle(tiny_geo_bundles["us"], tmp_path / "cand", mode="identical", version="cand-1")
    open_geo_store(env["store"], "us").publish(tmp_path / "cand")
    bad = _cli(env, "rollout", "start", "cand-1", "--stages", "10%,5%,100%")
    assert bad.exit_code == 2 and "stages" in bad.output and _keys(env) == []
    ok = _cli(env, "rollout", "start", "cand-1", "--stages", "shadow,10%,100%", "--hold", "30s")  # geo found by version
    assert ok.exit_code == 0, ok.output
    again = _cli(env, "rollout", "start", "cand-1", "--geo", "us")
    assert again.exit_code == 2 and "abort it first" in again.output
    status = _cli(env, "rollout", "status", "--geo", "us", "--json")
    assert status.exit_code == 0 and '"state": "running"' in status.output
    assert _cli(env, "rollout", "abort", "--reason", " ", store=False).exit_code == 2
    aborted = _cli(env, "rollout", "abort", "--reason", "test")
    assert aborted.exit_code == 0 and '"aborted"' in _cli(env, "rollout", "status", "--geo", "us", "--json").output


def test_experiments_refuse_bad_arms_and_one_runs_per_geography(env: dict[str, Any]) -> None:
    base = ["experiments", "create", "e1", "--geo", "us", "--arm", "control=50", "--arm", "weak=50"]
    for extra, field in ((["--arm-bundle", "weak=nope"], "nope"), (["--arm-rules", 'weak={"max_per_brand": 0}'], "max_per_brand"),
                         (["--arm-rules", "other={}"], "other"), (["--arm-candidates", "weak=0"], "candidate_count"),
                         (["--primary", "joy"], "primary")):
        result = _cli(env, *base, *extra)
        assert result.exit_code == 2 and field in result.output, (extra, result.output)
    assert _keys(env) == []
    assert _cli(env, *base, "--arm-rules", 'weak={"max_per_category": 1}').exit_code == 0
    second = _cli(env, "experiments", "create", "e2", "--geo", "us", "--arm", "a=1", "--arm", "b=1")
    assert second.exit_code == 2 and "one experiment per geography" in second.output
    listed = _cli(env, "experiments", "list", "--json", store=False)
    assert '"e1"' in listed.output and '"running"' in listed.output
    assert _cli(env, "experiments", "stop", "e1", "--geo", "us", "--reason", "done", store=False).exit_code == 0
    assert _cli(env, "experiments", "stop", "e1", "--geo", "us", "--reason", "done", store=False).exit_code == 2
