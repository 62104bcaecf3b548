"""Bundle verification: nothing from a bundle is used before this module says it is whole.

    verify_bundle(dir, supported_schema_versions=, semantic_checks=)   the gate before any use
      1. manifest.json is there and well-formed            check="manifest"
      2. no symlink, no missing file, no extra file        check="symlink" | "missing" | "extra"
      3. every size, then every SHA-256 (one read a file)  check="size" | "sha256"
      4. schema version is one serving supports            check="schema_version"
      5. the semantic checks handed in, in order           check= whatever the check names

A failure raises `BundleRejected(PermanentError)` with `.file` and `.check`. Semantic checks live in
serving (`serving/bundle_checks.py`); replication never imports serving, so they are passed in as
callables `(bundle_dir, manifest) -> None` that raise a PermanentError carrying `.file`/`.check`.

`replication.promotion.promote_verified` builds on this to move a store's "current" pointer only
after the bundle verified.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any, Callable, Collection, Iterable, Mapping, TypeVar

from regions.errors import InputError, PermanentError, TemporaryError
from replication.manifest import MANIFEST_FORMAT, MANIFEST_NAME, FileEntry, Manifest


SemanticCheck = Callable[[Path, Manifest], None]
T = TypeVar("T")

VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20
_REQUIRED_KEYS = ("format", "bundle_version", "created_at", "schema_version", "data_watermark", "metrics", "files")


class ManifestError(InputError):
    """manifest.json is not a valid format-1 manifest; `.field` names the offending key."""


class BundleRejected(PermanentError):
    """A bundle failed verification. `.file` names the file, `.check` the check that failed."""

    def __init__(self, *, file: str, check: str, detail: str) -> None:
        super().__init__(
            f"bundle rejected: {file} failed the {check} check: {detail}. "
            "Do not use this bundle; rebuild it (`regionctl train`) or fetch it again from the store."
        )
        self.file = file
        self.check = check
        self.detail = detail


def check_version(version: str, *, field: str = "version", error: type[InputError] = InputError) -> str:
    """A bundle version is used as a directory and key name: letters, digits, '.', '_', '-'."""
    if not isinstance(version, str) or not VERSION_PATTERN.match(version) or ".." in version:
        raise error(field, f"{version!r} is not a bundle version; use 1-128 of [A-Za-z0-9._-], starting alphanumeric")
    return version


def _safe_relative_name(name: str) -> bool:
    if not name or name.startswith("/") or "\\" in name or name == MANIFEST_NAME:
        return False
    return all(part not in ("", ".", "..") for part in name.split("/"))


def _number(raw: Mapping[str, Any], key: str) -> float:
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ManifestError(key, f"must be a finite number (seconds since the epoch), got {value!r}")
    return float(value)


def _int(raw: Mapping[str, Any], key: str, *, minimum: int) -> int:
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ManifestError(key, f"must be an integer >= {minimum}, got {value!r}")
    return value


def _files(raw: Any) -> dict[str, FileEntry]:
    if not isinstance(raw, dict):
        raise ManifestError("files", "must be an object {relative path: {sha256, size}}")
    files: dict[str, FileEntry] = {}
    for name, entry in raw.items():
        where = f"files.{name}"
        if not _safe_relative_name(name):
            raise ManifestError(where, "file names must be relative paths inside the bundle, without '..', and not manifest.json")
        if not isinstance(entry, dict):
            raise ManifestError(where, "must be an object {sha256, size}")
        for key in ("sha256", "size"):
            if key not in entry:
                raise ManifestError(f"{where}.{key}", "is missing")
        unknown = sorted(set(entry) - {"sha256", "size"})
        if unknown:
            raise ManifestError(f"{where}.{unknown[0]}", "is not a known key; allowed: sha256, size")
        sha = entry["sha256"]
        if not isinstance(sha, str) or not _SHA256_PATTERN.match(sha):
            raise ManifestError(f"{where}.sha256", "must be 64 lowercase hex digits")
        size = entry["size"]
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ManifestError(f"{where}.size", f"must be an integer >= 0, got {size!r}")
        files[name] = FileEntry(sha256=sha, size=size)
    return files


def parse_manifest(text: str | bytes) -> Manifest:
    """Parse manifest.json strictly: every key present, no unknown key, every type checked."""
    try:
        raw = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(MANIFEST_NAME, f"is not valid JSON ({exc}); rebuild the bundle") from exc
    if not isinstance(raw, dict):
        raise ManifestError(MANIFEST_NAME, "must be a JSON object")
    for key in _REQUIRED_KEYS:
        if key not in raw:
            raise ManifestError(key, "is missing")
    unknown = sorted(set(raw) - set(_REQUIRED_KEYS))
    if unknown:
        raise ManifestError(unknown[0], f"is not a known key; allowed: {', '.join(_REQUIRED_KEYS)}")
    if isinstance(raw["format"], bool) or raw["format"] != MANIFEST_FORMAT:
        raise ManifestError("format", f"must be {MANIFEST_FORMAT}, got {raw['format']!r}")
    if not isinstance(raw["bundle_version"], str):
        raise ManifestError("bundle_version", "must be a string")
    check_version(raw["bundle_version"], field="bundle_version", error=ManifestError)
    if not isinstance(raw["metrics"], dict):
        raise ManifestError("metrics", "must be an object")
    return Manifest(
        bundle_version=raw["bundle_version"], created_at=_number(raw, "created_at"),
        schema_version=_int(raw, "schema_version", minimum=1), data_watermark=_number(raw, "data_watermark"),
        files=_files(raw["files"]), metrics=raw["metrics"], format=MANIFEST_FORMAT,
    )


def read_manifest(bundle_dir: Path) -> Manifest:
    """The bundle's manifest, or BundleRejected(check="manifest")."""
    try:
        text = (bundle_dir / MANIFEST_NAME).read_bytes()
    except FileNotFoundError as exc:
        raise BundleRejected(file=MANIFEST_NAME, check="manifest", detail=f"no {MANIFEST_NAME} in {bundle_dir}") from exc
    except OSError as exc:
        raise TemporaryError(f"cannot read {bundle_dir / MANIFEST_NAME}: {exc}") from exc
    try:
        return parse_manifest(text)
    except ManifestError as exc:
        raise BundleRejected(file=MANIFEST_NAME, check="manifest", detail=str(exc)) from exc


def _present_files(bundle_dir: Path) -> set[str]:
    present: set[str] = set()
    for path in bundle_dir.rglob("*"):
        name = path.relative_to(bundle_dir).as_posix()
        if path.is_symlink():
            raise BundleRejected(file=name, check="symlink", detail="bundles hold plain files only, never links")
        if path.is_file() and name != MANIFEST_NAME:
            present.add(name)
    return present


def _hash_once(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _guarded(name: str, read: Callable[[], T]) -> T:
    try:
        return read()
    except FileNotFoundError as exc:
        raise BundleRejected(file=name, check="missing", detail="disappeared while being verified") from exc
    except OSError as exc:
        raise TemporaryError(f"cannot read bundle file {name}: {exc}; check the disk and retry") from exc


def verify_integrity(bundle_dir: Path) -> Manifest:
    """Steps 1-3: manifest, file set, sizes and SHA-256. Each file is read exactly once."""
    if not bundle_dir.is_dir():
        raise InputError("bundle_dir", f"{bundle_dir} is not a directory; pass a bundle directory with a {MANIFEST_NAME}")
    manifest = read_manifest(bundle_dir)
    present = _present_files(bundle_dir)
    missing = sorted(set(manifest.files) - present)
    if missing:
        raise BundleRejected(file=missing[0], check="missing", detail="listed in the manifest but not in the bundle")
    extra = sorted(present - set(manifest.files))
    if extra:
        raise BundleRejected(file=extra[0], check="extra", detail="in the bundle but not listed in the manifest")
    for name, entry in sorted(manifest.files.items()):  # stat first: a truncated file costs no read
        actual = _guarded(name, lambda: (bundle_dir / name).stat().st_size)
        if actual != entry.size:
            raise BundleRejected(file=name, check="size", detail=f"{actual} bytes, manifest says {entry.size}")
    for name, entry in sorted(manifest.files.items()):
        sha, size = _guarded(name, lambda: _hash_once(bundle_dir / name))
        if size != entry.size:  # changed between stat and read
            raise BundleRejected(file=name, check="size", detail=f"{size} bytes, manifest says {entry.size}")
        if sha != entry.sha256:
            raise BundleRejected(file=name, check="sha256", detail=f"sha256 {sha[:12]}..., manifest says {entry.sha256[:12]}...")
    return manifest


def _run_semantic_check(check: SemanticCheck, bundle_dir: Path, manifest: Manifest) -> None:
    try:
        check(bundle_dir, manifest)
    except BundleRejected:
        raise
    except TemporaryError:
        raise
    except Exception as exc:  # any failure of a check refuses the bundle: the last good one keeps serving
        name = getattr(check, "__name__", type(check).__name__)
        detail = str(getattr(exc, "detail", "")) or (str(exc) if isinstance(exc, PermanentError) else f"{type(exc).__name__}: {exc}")
        raise BundleRejected(
            file=str(getattr(exc, "file", "?")), check=str(getattr(exc, "check", name)), detail=detail,
        ) from exc


def verify_bundle(
    bundle_dir: Path, *, supported_schema_versions: Collection[int], semantic_checks: Iterable[SemanticCheck] = (),
) -> Manifest:
    """The gate before any use of a bundle. Returns its manifest or raises BundleRejected."""
    manifest = verify_integrity(bundle_dir)
    if manifest.schema_version not in supported_schema_versions:
        allowed = ", ".join(str(v) for v in sorted(supported_schema_versions)) or "none"
        raise BundleRejected(
            file=MANIFEST_NAME, check="schema_version",
            detail=f"schema version {manifest.schema_version} is not supported here (supported: {allowed})",
        )
    for check in semantic_checks:
        _run_semantic_check(check, bundle_dir, manifest)
    return manifest
