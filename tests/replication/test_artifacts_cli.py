"""`regionctl artifacts ...` through typer's runner, on a real filesystem store and moto's S3."""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from regionctl.artifacts_cmds import register
from replication.artifact_store import LocalArtifactStore
from tests.replication.artifact_helpers import make_bundle, moto_endpoint, new_bucket  # noqa: F401

INTEGRITY = ["--integrity-only", "--schema-version", "1"]


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("noop")(lambda: None)  # a second command keeps `artifacts` a sub-command
    register(app)
    return app


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(_app(), ["artifacts", *args], env={"COLUMNS": "200", **(env or {})})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, _flat(result.stdout), _flat(result.stderr)


def _flat(text: str) -> str:
    """One line, table borders dropped: assertions do not depend on terminal width or boxes."""
    return " ".join(re.sub("[\u2500-\u257f]", " ", text).split())


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return (tmp_path / "store").as_uri()


def test_publish_promote_list_rollback(tmp_path: Path, store_url: str) -> None:
    a = make_bundle(tmp_path / "src", version="va", seed=1)
    b = make_bundle(tmp_path / "src", version="vb", seed=2, created_at=2e9)
    for bundle in (a, b):
        code, out, _ = run("publish", str(bundle), "--store", store_url)
        assert code == 0 and f"published {bundle.name}" in out
    for version in ("va", "vb"):
        code, out, err = run("promote", version, "--store", store_url, *INTEGRITY)
        assert code == 0, err
        assert f"{version} is current" in out
    code, out, _ = run("list", "--store", store_url)
    assert code == 0 and "current vb" in out and "va" in out and "ndcg@10=0.310" in out
    code, out, _ = run("rollback", "--store", store_url)
    assert code == 0 and "va is current (was vb)" in out
    code, _, err = run("rollback", "--store", store_url)
    assert code == 2 and "nothing to roll back to" in err and "promote a known good version" in err


def test_store_comes_from_the_environment(tmp_path: Path, store_url: str) -> None:
    bundle = make_bundle(tmp_path / "src", version="env1")
    assert run("publish", str(bundle), env={"REGIONCTL_ARTIFACTS": store_url})[0] == 0
    assert [i.version for i in LocalArtifactStore(tmp_path / "store").list()] == ["env1"]


def test_verify_a_directory_and_a_stored_version(tmp_path: Path, store_url: str) -> None:
    bundle = make_bundle(tmp_path / "src", version="v1")
    code, out, _ = run("verify", str(bundle), *INTEGRITY)
    assert code == 0 and "verified" in out and "ranker.txt" in out
    run("publish", str(bundle), "--store", store_url)
    code, out, _ = run("verify", "v1", "--store", store_url, *INTEGRITY)
    assert code == 0 and "verified" in out


def test_verify_names_the_broken_file_and_exits_2(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "src")
    (bundle / "popularity.json").write_bytes(b"[3, 2, 1]")
    code, _, err = run("verify", str(bundle), *INTEGRITY)
    assert code == 2
    assert "popularity.json failed the sha256 check" in err and "rebuild it" in err


def test_promote_refuses_what_serving_rejects(tmp_path: Path, store_url: str) -> None:
    """Random bytes pass every checksum but not serving's semantic checks: never current."""
    pytest.importorskip("serving.bundle_checks")
    bundle = make_bundle(tmp_path / "src", version="random")
    run("publish", str(bundle), "--store", store_url)
    code, _, err = run("promote", "random", "--store", store_url)
    assert code == 2 and "bundle rejected" in err
    assert LocalArtifactStore(tmp_path / "store").current() is None


def test_missing_serving_checks_say_what_to_do(tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "serving.bundle_checks", None)  # import now raises ImportError
    code, _, err = run("verify", str(make_bundle(tmp_path)))
    assert code == 2 and "--integrity-only --schema-version N" in err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["list", "--store", "var/artifacts"], "file:///absolute/path or s3://bucket/prefix"),
        (["promote", "nope", *INTEGRITY], "regionctl artifacts list"),
        (["verify", "v1", "--integrity-only"], "--schema-version 1"),
        (["publish", "/no/such/dir"], "pass a bundle directory"),
    ],
)
def test_errors_exit_2_and_say_what_to_do(store_url: str, args: list[str], needle: str) -> None:
    code, out, err = run(*args, env={"REGIONCTL_ARTIFACTS": store_url})
    assert code == 2 and needle in err, out + err


def test_s3_store_through_the_cli(tmp_path: Path, moto_endpoint: str) -> None:  # noqa: F811
    url = f"s3://{new_bucket(moto_endpoint)}/cli"
    bundle = make_bundle(tmp_path / "src", version="s3v1")
    env = {"REGIONCTL_S3_ENDPOINT": moto_endpoint, **{k: os.environ[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}}
    assert run("publish", str(bundle), "--store", url, env=env)[0] == 0
    code, out, err = run("promote", "s3v1", "--store", url, *INTEGRITY, env=env)
    assert code == 0, err
    code, out, _ = run("list", "--store", url, "--s3-endpoint", moto_endpoint)
    assert code == 0 and "current s3v1" in out


def test_a_trained_bundle_passes_servings_checks_and_becomes_current(tmp_path: Path, store_url: str) -> None:
    """The real path: `regionctl train`'s output, serving's semantic checks, promote."""
    marketplace = pytest.importorskip("serving.marketplace")
    training = pytest.importorskip("serving.training")
    dataset = marketplace.generate_named("tiny", seed=1, geographies={"us": 0.6, "eu": 0.4})
    training.train_bundle(dataset, out_dir=tmp_path / "trained", now=dataset.end)
    code, out, err = run("publish", str(tmp_path / "trained"), "--store", store_url)
    assert code == 0, err
    version = out.split("published ")[1].split()[0]
    code, out, err = run("promote", version, "--store", store_url)
    assert code == 0, err
    assert "check_model_loads" in out and "check_golden_scores" in out
    assert LocalArtifactStore(tmp_path / "store").current() == version


def test_promote_and_rollback_are_journaled_in_the_control_store(tmp_path: Path, store_url: str) -> None:
    from failover.control_stores import store_from_url
    from failover.journal import Journal

    control = f"sqlite:///{tmp_path / 'control.db'}"
    for version, seed in (("va", 1), ("vb", 2)):
        run("publish", str(make_bundle(tmp_path / "src", version=version, seed=seed)), "--store", store_url)
        code, out, err = run("promote", version, "--store", store_url, "--control-store", control, *INTEGRITY)
        assert code == 0 and f"({'bundle_promote'})" in out, err
    code, out, _ = run("rollback", "--store", store_url, env={"REGIONCTL_CONTROL_STORE": control})
    assert code == 0 and "(bundle_rollback)" in out
    with store_from_url(control) as cs:
        journal = Journal(cs)
        entries = journal.entries()
        assert journal.verify().ok
    assert [(e.action, e.inputs["version"], e.inputs["previous"]) for e in entries] == [
        ("bundle_promote", "va", None), ("bundle_promote", "vb", "va"), ("bundle_rollback", "va", "vb")]
    assert all(e.actor.startswith("regionctl:") for e in entries)


def test_an_unreachable_control_store_is_reported_and_the_promote_stands(tmp_path: Path, store_url: str) -> None:
    run("publish", str(make_bundle(tmp_path / "src", version="va", seed=1)), "--store", store_url)
    (tmp_path / "a-file").write_text("not a directory")
    code, out, err = run("promote", "va", "--store", store_url, "--control-store", f"sqlite:///{tmp_path}/a-file/c.db",
                         *INTEGRITY)
    assert code == 0 and "va is current" in out
    assert "was not journaled" in err
    assert LocalArtifactStore(tmp_path / "store").current() == "va"


def test_without_a_control_store_nothing_is_journaled(tmp_path: Path, store_url: str) -> None:
    run("publish", str(make_bundle(tmp_path / "src", version="va", seed=1)), "--store", store_url)
    code, out, _ = run("promote", "va", "--store", store_url, *INTEGRITY)
    assert code == 0 and "not journaled: no control store" in out
