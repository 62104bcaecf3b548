"""The artifact store: where published model bundles live, and which one is current.

A small swappable interface (like an httpx transport) with two backends:

    ArtifactStore (Protocol)
    ├── LocalArtifactStore   a root directory (the default; `file:///path`)
    └── S3ArtifactStore      a bucket + prefix via boto3 (`s3://bucket/prefix`, replication.s3_store)

Rules every backend keeps (tests/replication/test_artifact_store.py runs one contract on both):
- publish is atomic: everything is uploaded under a staging name first, then made visible in one
  step (a directory rename; a single S3 PUT of an index object). A half-published bundle is never
  listed. Bundles are immutable: publishing a version again with other contents is refused.
- fetch downloads into a hidden sibling directory and renames it into place: a reader sees a
  whole bundle or nothing. Fetching does not verify; call replication.verifying before any use.
- the "current" pointer keeps a history; promote pushes, rollback pops (PointerState, pure).
  Use replication.promotion.promote_verified to promote: it refuses a bundle that fails checks.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Protocol, runtime_checkable

from regions.errors import InputError, PermanentError, TemporaryError
from replication.manifest import MANIFEST_NAME, Manifest
from replication.verifying import ManifestError, check_version, parse_manifest, verify_integrity

POINTER_FORMAT = 1
MAX_HISTORY = 100  # rolling back more than 100 promotions never happens; keeps the pointer small


SERVING_PLAN = "serving_plan.json"
"""The geography's serving plan (contracts.serving_plan) beside the pointer."""


class UnknownBundle(InputError):
    """The store holds no bundle of that version."""

    def __init__(self, version: str) -> None:
        super().__init__("version", f"no bundle {version!r} in the store; `regionctl artifacts list` shows what is there")


@dataclass(frozen=True)
class BundleInfo:
    """What `list()` says about a published bundle (from its manifest)."""

    version: str
    created_at: float
    schema_version: int
    data_watermark: float
    file_count: int
    total_bytes: int
    metrics: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> BundleInfo:
        return cls(
            version=manifest.bundle_version, created_at=manifest.created_at, schema_version=manifest.schema_version,
            data_watermark=manifest.data_watermark, file_count=len(manifest.files),
            total_bytes=sum(e.size for e in manifest.files.values()), metrics=dict(manifest.metrics),
        )


@dataclass(frozen=True)
class PointerState:
    """The current bundle and the stack of previously current ones (newest last). Pure."""

    current: str | None = None
    previous: tuple[str, ...] = ()

    def promoted(self, version: str) -> PointerState:
        if version == self.current:
            return self
        previous = self.previous + ((self.current,) if self.current is not None else ())
        return PointerState(current=version, previous=previous[-MAX_HISTORY:])

    def rolled_back(self) -> PointerState:
        if not self.previous:
            raise PermanentError(
                "nothing to roll back to: no bundle was current before "
                f"{self.current or '(none)'}; promote a known good version instead"
            )
        return PointerState(current=self.previous[-1], previous=self.previous[:-1])

    def to_json(self) -> str:
        return json.dumps({"format": POINTER_FORMAT, "current": self.current, "previous": list(self.previous)}, indent=2)

    @classmethod
    def parse(cls, text: str | bytes) -> PointerState:
        try:
            raw = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise PermanentError(f"the store's pointer is not valid JSON ({exc}); restore it or promote a version again") from exc
        if not isinstance(raw, dict) or raw.get("format") != POINTER_FORMAT or set(raw) != {"format", "current", "previous"}:
            raise PermanentError("the store's pointer is not a format-1 pointer {format, current, previous}; restore it")
        current, previous = raw["current"], raw["previous"]
        if current is not None:
            check_version(current, field="pointer.current")
        if not isinstance(previous, list):
            raise PermanentError("the store's pointer field 'previous' must be a list of versions; restore it")
        return cls(current=current, previous=tuple(check_version(v, field="pointer.previous") for v in previous))


@runtime_checkable
class ArtifactStore(Protocol):
    """Where bundles are published, listed, fetched, promoted and rolled back."""

    def publish(self, bundle_dir: Path) -> str: ...

    def list(self) -> list[BundleInfo]: ...

    def fetch(self, version: str, dest: Path) -> Path: ...

    def current(self) -> str | None: ...

    def history(self) -> PointerState: ...

    def promote(self, version: str) -> None: ...

    def rollback(self) -> str: ...

    def serving_plan(self) -> str | None:
        """The geography's serving plan document (contracts.serving_plan), or None when none was written."""
        ...

    def put_serving_plan(self, text: str) -> None:
        """Replace the serving plan document (the controller leader writes it; cells read it)."""
        ...


def _os_error(exc: OSError, what: str) -> Exception:
    """OSError -> project error: permissions and read-only are permanent, the rest may pass."""
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return PermanentError(f"{what}: {exc}; fix the permissions of the store directory")
    return TemporaryError(f"{what}: {exc}; check the disk and retry", delay=5.0)


def install_tree(staging: Path, final: Path) -> bool:
    """Rename a fully written directory into place. False if `final` already exists (immutability)."""
    try:
        os.rename(staging, final)
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            return False
        raise
    return True


def partial_dir(dest: Path, version: str) -> Path:
    """A hidden sibling where a fetch is written before it is renamed into place."""
    return dest / f".partial-{version}-{uuid.uuid4().hex[:8]}"


class LocalArtifactStore:
    """Bundles under `root/bundles/<version>/`, staging under `root/staging/`, `root/pointer.json`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.url = self.root.resolve().as_uri()

    def __repr__(self) -> str:
        return f"LocalArtifactStore({str(self.root)!r})"

    # -- paths -------------------------------------------------------------------------
    def _bundle_dir(self, version: str) -> Path:
        return self.root / "bundles" / check_version(version)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise pointer updates between processes (flock on root/.lock)."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fh = open(self.root / ".lock", "a+")
        except OSError as exc:
            raise _os_error(exc, f"cannot lock the artifact store at {self.root}") from exc
        try:
            fcntl.flock(fh, fcntl.LOCK_EX)
            yield
        finally:
            fh.close()

    def _before_visible(self, staging: Path) -> None:
        """Hook between upload and visibility; tests override it to crash there."""

    # -- interface ---------------------------------------------------------------------
    def publish(self, bundle_dir: Path) -> str:
        bundle_dir = Path(bundle_dir)
        manifest = verify_integrity(bundle_dir)  # never publish a bundle that does not match its manifest
        version = manifest.bundle_version
        staging = self.root / "staging" / f"{version}.{uuid.uuid4().hex[:8]}"
        try:
            (self.root / "bundles").mkdir(parents=True, exist_ok=True)
            staging.parent.mkdir(parents=True, exist_ok=True)
            for name in sorted(manifest.files):
                (staging / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(bundle_dir / name, staging / name)
            shutil.copyfile(bundle_dir / MANIFEST_NAME, staging / MANIFEST_NAME)
            verify_integrity(staging)  # what becomes visible is exactly what was verified
            self._before_visible(staging)
            installed = install_tree(staging, self._bundle_dir(version))
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise _os_error(exc, f"cannot publish {version} to {self.root}") from exc
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if not installed:
            shutil.rmtree(staging, ignore_errors=True)
            existing = self._manifest(version)
            if existing != manifest:
                raise PermanentError(
                    f"bundle {version} is already published with different contents; bundles are immutable: "
                    "build a new version"
                )
        return version

    def _manifest(self, version: str) -> Manifest:
        path = self._bundle_dir(version) / MANIFEST_NAME
        try:
            return parse_manifest(path.read_bytes())
        except FileNotFoundError as exc:
            raise UnknownBundle(version) from exc
        except ManifestError as exc:
            raise PermanentError(f"bundle {version} in {self.root} has a broken manifest ({exc}); remove it from the store") from exc
        except OSError as exc:
            raise _os_error(exc, f"cannot read bundle {version}") from exc

    def list(self) -> list[BundleInfo]:
        try:
            names = sorted(p.name for p in (self.root / "bundles").iterdir() if p.is_dir())
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise _os_error(exc, f"cannot list {self.root}") from exc
        infos = [BundleInfo.from_manifest(self._manifest(name)) for name in names]
        return sorted(infos, key=lambda i: (i.created_at, i.version))

    def fetch(self, version: str, dest: Path) -> Path:
        source = self._bundle_dir(version)
        final = Path(dest) / version
        if final.is_dir():
            return final  # an earlier fetch finished (fetches are atomic); verify before use as always
        if not source.is_dir():
            raise UnknownBundle(version)
        partial = partial_dir(Path(dest), version)
        try:
            Path(dest).mkdir(parents=True, exist_ok=True)
            shutil.copytree(source, partial, symlinks=True)
            install_tree(partial, final)
        except OSError as exc:
            raise _os_error(exc, f"cannot fetch {version} into {dest}") from exc
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        return final

    def _read_pointer(self) -> PointerState:
        try:
            return PointerState.parse((self.root / "pointer.json").read_bytes())
        except FileNotFoundError:
            return PointerState()
        except OSError as exc:
            raise _os_error(exc, f"cannot read the pointer of {self.root}") from exc

    def _write_pointer(self, state: PointerState) -> None:
        self._replace("pointer.json", state.to_json(), "the pointer")

    def _replace(self, name: str, text: str, what: str) -> None:
        """Write `name` atomically (temporary file, fsync, rename)."""
        path = self.root / name
        tmp = self.root / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise _os_error(exc, f"cannot write {what} of {self.root}") from exc

    def serving_plan(self) -> str | None:
        try:
            return (self.root / SERVING_PLAN).read_text()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _os_error(exc, f"cannot read the serving plan of {self.root}") from exc

    def put_serving_plan(self, text: str) -> None:
        self._replace(SERVING_PLAN, text, "the serving plan")

    def current(self) -> str | None:
        return self._read_pointer().current

    def history(self) -> PointerState:
        return self._read_pointer()

    def promote(self, version: str) -> None:
        """Low level: move the pointer. Use promotion.promote_verified, which verifies first."""
        self._manifest(version)  # must exist and be readable
        with self._locked():
            self._write_pointer(self._read_pointer().promoted(version))

    def rollback(self) -> str:
        with self._locked():
            state = self._read_pointer().rolled_back()
            self._write_pointer(state)
        assert state.current is not None
        return state.current


__all__ = [
    "ArtifactStore", "BundleInfo", "LocalArtifactStore", "PointerState", "UnknownBundle", "install_tree",
    "partial_dir",
]
