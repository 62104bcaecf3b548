"""Bundle verification: every kind of corruption is refused, naming the file and the check."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings

from regions.errors import InputError, PermanentError
from replication.manifest import MANIFEST_NAME, FileEntry, Manifest
from replication.verifying import BundleRejected, ManifestError, parse_manifest, verify_bundle, verify_integrity
from tests.replication.artifact_helpers import make_bundle

SUPPORTED = frozenset({1})


def _edit_manifest(bundle: Path, change: Callable[[dict[str, Any]], None]) -> None:
    raw = json.loads((bundle / MANIFEST_NAME).read_text())
    change(raw)
    (bundle / MANIFEST_NAME).write_text(json.dumps(raw))


def flip_byte(b: Path) -> None:
    data = bytearray((b / "ranker.txt").read_bytes())
    data[1234] ^= 0x01
    (b / "ranker.txt").write_bytes(bytes(data))


def truncate(b: Path) -> None:
    os.truncate(b / "ranker.txt", 100)


def remove_file(b: Path) -> None:
    (b / "popularity.json").unlink()


def add_file(b: Path) -> None:
    (b / "notes.txt").write_text("not in the manifest")


def add_nested_file(b: Path) -> None:
    (b / "extra" / "more.json").write_text("{}")


def link_file(b: Path) -> None:
    (b / "popularity.json").unlink()
    (b / "popularity.json").symlink_to(b / "ranker.txt")


def bad_json(b: Path) -> None:
    (b / MANIFEST_NAME).write_text('{"format": 1, "files": ')


def no_manifest(b: Path) -> None:
    (b / MANIFEST_NAME).unlink()


def changed_checksum(b: Path) -> None:
    _edit_manifest(b, lambda m: m["files"]["ranker.txt"].update(sha256="0" * 64))


def changed_size(b: Path) -> None:
    _edit_manifest(b, lambda m: m["files"]["item_embeddings.npy"].update(size=4999))


def missing_key(b: Path) -> None:
    _edit_manifest(b, lambda m: m.pop("schema_version"))


def wrong_schema(b: Path) -> None:
    _edit_manifest(b, lambda m: m.update(schema_version=7))


@pytest.mark.parametrize(
    ("corrupt", "check", "file"),
    [
        (flip_byte, "sha256", "ranker.txt"),
        (truncate, "size", "ranker.txt"),
        (remove_file, "missing", "popularity.json"),
        (add_file, "extra", "notes.txt"),
        (add_nested_file, "extra", "extra/more.json"),
        (link_file, "symlink", "popularity.json"),
        (bad_json, "manifest", MANIFEST_NAME),
        (no_manifest, "manifest", MANIFEST_NAME),
        (changed_checksum, "sha256", "ranker.txt"),
        (changed_size, "size", "item_embeddings.npy"),
        (missing_key, "manifest", MANIFEST_NAME),
        (wrong_schema, "schema_version", MANIFEST_NAME),
    ],
)
def test_corruption_is_rejected_naming_file_and_check(tmp_path: Path, corrupt: Callable[[Path], None], check: str, file: str) -> None:
    bundle = make_bundle(tmp_path)
    corrupt(bundle)
    ran: list[str] = []
    with pytest.raises(BundleRejected) as info:
        verify_bundle(bundle, supported_schema_versions=SUPPORTED, semantic_checks=[lambda d, m: ran.append("semantic")])
    assert (info.value.check, info.value.file) == (check, file)
    assert isinstance(info.value, PermanentError)
    assert ran == []  # semantic checks never see a bundle that failed integrity
    assert file in str(info.value) and check in str(info.value)


def test_missing_key_message_names_the_key(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path)
    missing_key(bundle)
    with pytest.raises(BundleRejected, match="schema_version: is missing"):
        verify_bundle(bundle, supported_schema_versions=SUPPORTED)


def test_a_whole_bundle_passes_and_returns_its_manifest(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path)
    seen: list[Manifest] = []
    manifest = verify_bundle(bundle, supported_schema_versions=SUPPORTED, semantic_checks=[lambda d, m: seen.append(m)])
    assert manifest == parse_manifest((bundle / MANIFEST_NAME).read_text())
    assert seen == [manifest]
    assert set(manifest.files) == {"ranker.txt", "item_embeddings.npy", "popularity.json", "extra/segments.json"}


def test_not_a_directory_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        verify_integrity(tmp_path / "nope")
    assert info.value.field == "bundle_dir"


# -- semantic checks: a model file that is not a model -------------------------------------
class ModelCheckFailed(PermanentError):
    def __init__(self, file: str, check: str, message: str) -> None:
        super().__init__(message)
        self.file, self.check = file, check


def lightgbm_loads(bundle_dir: Path, manifest: Manifest) -> None:
    import lightgbm

    try:
        booster = lightgbm.Booster(model_file=str(bundle_dir / "ranker.txt"))
    except lightgbm.basic.LightGBMError as exc:
        raise ModelCheckFailed("ranker.txt", "lightgbm_load", f"not a LightGBM model: {exc}") from exc
    if booster.num_trees() < 1:
        raise ModelCheckFailed("ranker.txt", "lightgbm_load", "the model has no trees")


def _tiny_model_text() -> bytes:
    import lightgbm

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    y = (x[:, 0] > 0).astype(float)
    params = {"objective": "binary", "num_leaves": 4, "verbose": -1, "min_data_in_leaf": 5}
    booster = lightgbm.train(params, lightgbm.Dataset(x, y), num_boost_round=3)
    return booster.model_to_string().encode()


def test_semantic_check_accepts_a_real_model(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, files={"ranker.txt": _tiny_model_text(), "popularity.json": b"[1]"})
    manifest = verify_bundle(bundle, supported_schema_versions=SUPPORTED, semantic_checks=[lightgbm_loads])
    assert manifest.files["ranker.txt"].size > 0


def test_a_model_file_that_is_not_a_model_is_rejected(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path)  # ranker.txt holds random bytes, with a correct checksum
    with pytest.raises(BundleRejected) as info:
        verify_bundle(bundle, supported_schema_versions=SUPPORTED, semantic_checks=[lightgbm_loads])
    assert (info.value.file, info.value.check) == ("ranker.txt", "lightgbm_load")
    assert isinstance(info.value.__cause__, ModelCheckFailed)


def test_a_check_that_crashes_still_refuses_and_names_itself(tmp_path: Path) -> None:
    def golden_request(bundle_dir: Path, manifest: Manifest) -> None:
        raise KeyError("users.json")

    bundle = make_bundle(tmp_path)
    with pytest.raises(BundleRejected) as info:
        verify_bundle(bundle, supported_schema_versions=SUPPORTED, semantic_checks=[golden_request])
    assert info.value.check == "golden_request"


# -- strict manifest parsing -----------------------------------------------------------------
def _valid() -> dict[str, Any]:
    return {
        "format": 1, "bundle_version": "20261125T120000Z-ab12cd34", "created_at": 1.5, "schema_version": 1,
        "data_watermark": 1.0, "metrics": {}, "files": {"a.bin": {"sha256": "a" * 64, "size": 3}},
    }


@pytest.mark.parametrize(
    ("key", "value", "field"),
    [
        ("format", 2, "format"),
        ("format", True, "format"),
        ("bundle_version", "../etc", "bundle_version"),
        ("bundle_version", 7, "bundle_version"),
        ("created_at", "yesterday", "created_at"),
        ("created_at", float("nan"), "created_at"),
        ("schema_version", 0, "schema_version"),
        ("schema_version", 1.0, "schema_version"),
        ("data_watermark", None, "data_watermark"),
        ("metrics", [], "metrics"),
        ("files", [], "files"),
        ("files", {"a.bin": {"sha256": "A" * 64, "size": 3}}, "files.a.bin.sha256"),
        ("files", {"a.bin": {"sha256": "a" * 63, "size": 3}}, "files.a.bin.sha256"),
        ("files", {"a.bin": {"sha256": "a" * 64, "size": -1}}, "files.a.bin.size"),
        ("files", {"a.bin": {"sha256": "a" * 64}}, "files.a.bin.size"),
        ("files", {"a.bin": {"sha256": "a" * 64, "size": 3, "mode": 1}}, "files.a.bin.mode"),
        ("files", {"../a.bin": {"sha256": "a" * 64, "size": 3}}, "files.../a.bin"),
        ("files", {"/abs": {"sha256": "a" * 64, "size": 3}}, "files./abs"),
        ("files", {MANIFEST_NAME: {"sha256": "a" * 64, "size": 3}}, f"files.{MANIFEST_NAME}"),
        ("surprise", 1, "surprise"),
    ],
)
def test_parse_manifest_names_the_bad_key(key: str, value: Any, field: str) -> None:
    raw = _valid()
    raw[key] = value
    with pytest.raises(ManifestError) as info:
        parse_manifest(json.dumps(raw))
    assert info.value.field == field


@pytest.mark.parametrize("text", ["", "[]", "null", "{", "\u00ff\u00fe"])
def test_parse_manifest_refuses_non_objects(text: str) -> None:
    with pytest.raises(ManifestError) as info:
        parse_manifest(text)
    assert info.value.field == MANIFEST_NAME


_names = st.text(alphabet="abcdefghij_-.", min_size=1, max_size=8).filter(lambda n: n not in (".", "..") and n != MANIFEST_NAME)
_manifests = st.builds(
    Manifest,
    bundle_version=st.tuples(st.sampled_from("aZ09"), st.text(alphabet="abcXYZ019_-.", max_size=20)).map("".join).filter(lambda v: ".." not in v),
    created_at=st.floats(min_value=0, max_value=4e9), schema_version=st.integers(1, 50),
    data_watermark=st.floats(min_value=0, max_value=4e9),
    files=st.dictionaries(
        st.lists(_names, min_size=1, max_size=3).map("/".join),
        st.builds(FileEntry, sha256=st.binary(min_size=32, max_size=32).map(bytes.hex), size=st.integers(0, 2**40)),
        max_size=5,
    ),
    metrics=st.dictionaries(st.text(max_size=5), st.floats(allow_nan=False, allow_infinity=False), max_size=3),
)


@settings(max_examples=60)
@given(_manifests)
def test_parse_manifest_round_trips(manifest: Manifest) -> None:
    assert parse_manifest(manifest.to_json()) == manifest


@settings(max_examples=60)
@given(_manifests, st.sampled_from(["format", "bundle_version", "created_at", "schema_version", "data_watermark", "metrics", "files"]))
def test_any_missing_key_is_named(manifest: Manifest, key: str) -> None:
    raw = json.loads(manifest.to_json())
    del raw[key]
    with pytest.raises(ManifestError) as info:
        parse_manifest(json.dumps(raw))
    assert info.value.field == key
