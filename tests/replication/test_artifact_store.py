"""The artifact store contract, run on both backends (filesystem, and S3 via moto's real server)."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import boto3
import hypothesis.strategies as st
import pytest
from hypothesis import given

from regions.errors import InputError, PermanentError, TemporaryError
from regions.processes import LOOPBACK, free_port
from replication.artifact_store import (
    MAX_HISTORY, ArtifactStore, LocalArtifactStore, PointerState, UnknownBundle,
)
from replication.artifact_stores import store_from_url
from replication.manifest import MANIFEST_NAME
from replication.s3_store import S3ArtifactStore, S3Settings
from replication.verifying import BundleRejected, verify_bundle
from replication.promotion import promote_verified
from tests.replication.artifact_helpers import BASE_TIME, make_bundle, moto_endpoint, new_bucket, store  # noqa: F401

SUPPORTED = frozenset({1})


def _versions(s: ArtifactStore) -> list[str]:
    return [info.version for info in s.list()]


def _tamper(s: ArtifactStore, version: str, name: str, data: bytes) -> None:
    """Change a stored file behind the store's back (bit rot, a bad actor)."""
    if isinstance(s, LocalArtifactStore):
        (s.root / "bundles" / version / name).write_bytes(data)
        return
    assert isinstance(s, S3ArtifactStore)
    client = boto3.client("s3", endpoint_url=s.endpoint_url, region_name="us-east-1")
    index = json.loads(client.get_object(Bucket=s.bucket, Key=f"{s.prefix}/bundles/{version}.json")["Body"].read())
    client.put_object(Bucket=s.bucket, Key=f"{s.prefix}/{index['data']}{name}", Body=data)


# -- contract: both backends ----------------------------------------------------------------
def test_empty_store(store: ArtifactStore) -> None:
    assert store.list() == []
    assert store.current() is None
    with pytest.raises(PermanentError, match="nothing to roll back to"):
        store.rollback()


def test_publish_list_fetch_round_trip(store: ArtifactStore, tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "src")
    version = store.publish(bundle)
    assert version == bundle.name
    [info] = store.list()
    assert (info.version, info.created_at, info.schema_version, info.file_count) == (version, BASE_TIME, 1, 4)
    assert info.total_bytes == sum((bundle / n).stat().st_size for n in ("ranker.txt", "item_embeddings.npy", "popularity.json", "extra/segments.json"))
    fetched = store.fetch(version, tmp_path / "dest")
    assert fetched == tmp_path / "dest" / version
    verify_bundle(fetched, supported_schema_versions=SUPPORTED)
    assert (fetched / "extra" / "segments.json").read_bytes() == (bundle / "extra" / "segments.json").read_bytes()
    assert (fetched / MANIFEST_NAME).read_bytes() == (bundle / MANIFEST_NAME).read_bytes()
    assert [p.name for p in (tmp_path / "dest").iterdir()] == [version]  # no partial left behind


def test_list_is_ordered_by_creation_time(store: ArtifactStore, tmp_path: Path) -> None:
    late = store.publish(make_bundle(tmp_path, created_at=BASE_TIME + 60, version="b-late"))
    early = store.publish(make_bundle(tmp_path, created_at=BASE_TIME, version="z-early"))
    assert _versions(store) == [early, late]


def test_publish_is_idempotent_but_bundles_are_immutable(store: ArtifactStore, tmp_path: Path) -> None:
    version = store.publish(make_bundle(tmp_path / "a", version="v1", seed=1))
    assert store.publish(make_bundle(tmp_path / "b", version="v1", seed=1)) == version
    with pytest.raises(PermanentError, match="immutable"):
        store.publish(make_bundle(tmp_path / "c", version="v1", seed=2))
    assert _versions(store) == ["v1"]


def test_a_corrupt_bundle_is_never_published(store: ArtifactStore, tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path)
    (bundle / "ranker.txt").write_bytes(b"changed after the manifest was built")
    with pytest.raises(BundleRejected) as info:
        store.publish(bundle)
    assert info.value.file == "ranker.txt"
    assert store.list() == []


@pytest.mark.parametrize("op", ["fetch", "promote"])
def test_unknown_version(store: ArtifactStore, tmp_path: Path, op: str) -> None:
    with pytest.raises(UnknownBundle) as info:
        store.fetch("v404", tmp_path) if op == "fetch" else store.promote("v404")
    assert info.value.field == "version" and "regionctl artifacts list" in str(info.value)
    assert not (tmp_path / "v404").exists()


@pytest.mark.parametrize("bad", ["../x", "", "a/b", ".hidden", "x" * 200])
def test_malformed_version_is_an_input_error(store: ArtifactStore, tmp_path: Path, bad: str) -> None:
    with pytest.raises(InputError):
        store.fetch(bad, tmp_path)


def test_promote_and_rollback_keep_a_history(store: ArtifactStore, tmp_path: Path) -> None:
    a, b, c = (store.publish(make_bundle(tmp_path, version=v)) for v in ("va", "vb", "vc"))
    store.promote(a)
    store.promote(b)
    store.promote(b)  # promoting the current one again changes nothing
    store.promote(c)
    assert store.current() == c
    assert store.history() == PointerState(current=c, previous=(a, b))
    assert store.rollback() == b
    assert store.rollback() == a
    with pytest.raises(PermanentError, match="nothing to roll back to"):
        store.rollback()
    assert store.current() == a


def test_a_crash_before_visibility_leaves_nothing_listed(store: ArtifactStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(*args: object) -> None:
        raise KeyboardInterrupt("operator pressed ^C mid-publish")

    monkeypatch.setattr(store, "_before_visible", crash)
    with pytest.raises(KeyboardInterrupt):
        store.publish(make_bundle(tmp_path))
    assert store.list() == []


def test_a_killed_publisher_leaves_nothing_listed(store: ArtifactStore, tmp_path: Path) -> None:
    """A real process dies (os._exit: no clean-up runs) after uploading, before visibility."""
    bundle = make_bundle(tmp_path)
    endpoint = getattr(store, "endpoint_url", None)
    script = textwrap.dedent(f"""
        import os, pathlib
        from replication.artifact_stores import store_from_url
        s = store_from_url({store.url!r}, endpoint_url={endpoint!r})  # type: ignore[attr-defined]
        s._before_visible = lambda *a: os._exit(9)
        s.publish(pathlib.Path({str(bundle)!r}))
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).parents[2], capture_output=True, timeout=60)
    assert done.returncode == 9, done.stderr.decode()
    assert store.list() == []
    assert store.publish(bundle) == bundle.name  # and a later publish of the same bundle works
    assert _versions(store) == [bundle.name]


def test_promote_verified_refuses_a_tampered_bundle(store: ArtifactStore, tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    good = store.publish(make_bundle(tmp_path, version="good"))
    promote_verified(store, good, supported_schema_versions=SUPPORTED, scratch_dir=scratch)
    bad = store.publish(make_bundle(tmp_path, version="bad"))
    _tamper(store, bad, "ranker.txt", b"x" * 3000)  # same size, other bytes
    with pytest.raises(BundleRejected) as info:
        promote_verified(store, bad, supported_schema_versions=SUPPORTED, scratch_dir=scratch)
    assert (info.value.file, info.value.check) == ("ranker.txt", "sha256")
    assert store.current() == good
    assert list(scratch.iterdir()) == []  # scratch copies are gone


@pytest.mark.parametrize("reason", ["schema", "semantic"])
def test_a_refused_bundle_never_becomes_current(store: ArtifactStore, tmp_path: Path, reason: str) -> None:
    def golden(bundle_dir: Path, manifest: object) -> None:
        raise PermanentError("golden request produced 0 rows")

    version = store.publish(make_bundle(tmp_path, schema_version=7 if reason == "schema" else 1))
    with pytest.raises(BundleRejected) as info:
        promote_verified(store, version, supported_schema_versions=SUPPORTED, semantic_checks=[golden], scratch_dir=tmp_path)
    assert info.value.check == ("schema_version" if reason == "schema" else "golden")
    assert store.current() is None


# -- S3 only: errors, fetch atomicity, compare-and-swap --------------------------------------
def test_s3_unreachable_is_temporary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    s = S3ArtifactStore(bucket="b", endpoint_url=f"http://{LOOPBACK}:{free_port()}", settings=S3Settings(max_attempts=1, connect_timeout_s=1))
    with pytest.raises(TemporaryError, match="unreachable") as info:
        s.list()
    assert info.value.__cause__ is not None


def test_s3_without_credentials_is_permanent(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    s = S3ArtifactStore(bucket="b", endpoint_url=f"http://{LOOPBACK}:{free_port()}")
    with pytest.raises(PermanentError, match="no AWS credentials"):
        s.current()


def test_s3_missing_bucket_is_permanent(moto_endpoint: str) -> None:  # noqa: F811
    s = S3ArtifactStore(bucket="no-such-bucket-here", endpoint_url=moto_endpoint)
    with pytest.raises(PermanentError, match="bucket does not exist"):
        s.current()


def test_s3_fetch_that_breaks_off_leaves_nothing(moto_endpoint: str, tmp_path: Path) -> None:  # noqa: F811
    s = S3ArtifactStore(bucket=new_bucket(moto_endpoint), prefix="p", endpoint_url=moto_endpoint)
    version = s.publish(make_bundle(tmp_path / "src"))
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    [key] = [o["Key"] for o in client.list_objects_v2(Bucket=s.bucket, Prefix="p/data/")["Contents"] if o["Key"].endswith("ranker.txt")]
    client.delete_object(Bucket=s.bucket, Key=key)
    with pytest.raises(PermanentError):
        s.fetch(version, tmp_path / "dest")
    assert list((tmp_path / "dest").iterdir()) == []


def test_s3_concurrent_promote_loses_no_update(moto_endpoint: str, tmp_path: Path) -> None:  # noqa: F811
    bucket = new_bucket(moto_endpoint)
    mine, theirs = (S3ArtifactStore(bucket=bucket, endpoint_url=moto_endpoint) for _ in range(2))
    for v in ("v1", "v2", "v3"):
        mine.publish(make_bundle(tmp_path, version=v))
    mine.promote("v1")
    raced: list[str] = []

    def change(state: PointerState) -> PointerState:
        if not raced:  # another operator promotes between our read and our write
            raced.append("v2")
            theirs.promote("v2")
        return state.promoted("v3")

    mine._update_pointer(change)
    assert mine.history() == PointerState(current="v3", previous=("v1", "v2"))


# -- pure: the pointer, the URL factory ------------------------------------------------------
@given(st.lists(st.one_of(st.sampled_from(["a", "b", "c", "d"]), st.none()), max_size=40))
def test_pointer_behaves_like_a_stack(ops: list[str | None]) -> None:
    state, model_current, model_stack = PointerState(), None, []
    for op in ops:
        if op is None:  # rollback
            if not model_stack:
                with pytest.raises(PermanentError):
                    state.rolled_back()
                continue
            state, model_current = state.rolled_back(), model_stack.pop()
        else:
            if op != model_current:
                if model_current is not None:
                    model_stack.append(model_current)
                model_current = op
            state = state.promoted(op)
        assert (state.current, list(state.previous)) == (model_current, model_stack)
        assert PointerState.parse(state.to_json()) == state


def test_pointer_history_is_bounded() -> None:
    state = PointerState()
    for i in range(MAX_HISTORY + 10):
        state = state.promoted(f"v{i}")
    assert len(state.previous) == MAX_HISTORY and state.previous[-1] == f"v{MAX_HISTORY + 8}"


@pytest.mark.parametrize("text", ["{", "[]", '{"format": 2, "current": null, "previous": []}', '{"format": 1, "current": "../x", "previous": []}', '{"format": 1, "current": null}'])
def test_broken_pointer_is_refused(text: str) -> None:
    with pytest.raises((PermanentError, InputError)):
        PointerState.parse(text)


@pytest.mark.parametrize(
    ("url", "kind", "where"),
    [
        ("file:///srv/artifacts", LocalArtifactStore, "/srv/artifacts"),
        ("file://localhost/srv/a%20b", LocalArtifactStore, "/srv/a b"),
        ("s3://shopnow-bundles/prod/ranker", S3ArtifactStore, "prod/ranker"),
        ("s3://shopnow-bundles", S3ArtifactStore, ""),
    ],
)
def test_store_from_url(url: str, kind: type, where: str) -> None:
    s = store_from_url(url, endpoint_url=f"http://{LOOPBACK}:1" if kind is S3ArtifactStore else None)
    assert isinstance(s, kind)
    assert (str(s.root) if isinstance(s, LocalArtifactStore) else s.prefix) == where


@pytest.mark.parametrize("url", ["var/artifacts", "file://host/x", "file:relative", "s3:///prefix", "gs://b/p", "http://127.0.0.1/x"])
def test_store_from_url_refuses(url: str) -> None:
    with pytest.raises(InputError) as info:
        store_from_url(url)
    assert info.value.field == "store"
