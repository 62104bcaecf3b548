"""The S3 backend of the artifact store (boto3). Same contract as LocalArtifactStore.

Layout under `s3://bucket/prefix/`:

    data/<version>.<token>/<file>     the bundle's files, uploaded first (the staging name)
    bundles/<version>.json            the index object: {"format", "data", "manifest"}; one PUT,
                                      create-only (If-None-Match: *), makes the bundle visible
    pointer.json                      PointerState; replaced with If-Match on its ETag (compare-and-swap)
    serving_plan.json                 the geography's serving plan (contracts.serving_plan), written by the controller leader

A crash between upload and visibility leaves only unlisted objects under data/. Errors from
botocore are mapped here, once, to regions.errors and raised `from` the original.
"""
from __future__ import annotations

import json
import shutil
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError, ClientError, ConnectionClosedError, ConnectTimeoutError, EndpointConnectionError,
    NoCredentialsError, ReadTimeoutError,
)

from regions.cas_retry import LOST, CasRetry, Lost
from regions.errors import PermanentError, TemporaryError
from replication.artifact_store import SERVING_PLAN, BundleInfo, PointerState, UnknownBundle, install_tree, partial_dir
from replication.manifest import MANIFEST_NAME, Manifest
from replication.verifying import ManifestError, check_version, parse_manifest, verify_integrity

T = TypeVar("T")
INDEX_FORMAT = 1
_TEMPORARY_CODES = {"SlowDown", "Throttling", "RequestTimeout", "ServiceUnavailable", "InternalError", "RequestTimeTooSkewed"}
_DENIED_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "AllAccessDisabled"}


@dataclass(frozen=True)
class S3Settings:
    """Client settings; each default carries its reason."""

    connect_timeout_s: float = 3.0  # a loopback or in-region endpoint answers in ms; 3 s means it is down
    read_timeout_s: float = 60.0  # big bundle files stream for a while; a stall of a minute is a failure
    max_attempts: int = 3  # botocore "standard" retries absorb a blip; the caller's TemporaryError handles outages
    region_name: str = "us-east-1"  # S3-compatible endpoints (moto, MinIO) accept any; AWS needs one for signing
    pointer_cas_attempts: int = 3  # concurrent promotes are rare; after 3 lost races ask the operator to retry


def map_s3_error(exc: Exception, what: str) -> Exception:
    """botocore error -> project error. The caller raises the result `from exc`."""
    if isinstance(exc, NoCredentialsError):
        return PermanentError(f"{what}: no AWS credentials; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE")
    if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError)):
        return TemporaryError(f"{what}: S3 is unreachable ({exc}); check --s3-endpoint and retry", delay=5.0)
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code == "NoSuchBucket":
            return PermanentError(f"{what}: the bucket does not exist; create it or fix --store")
        if code in _DENIED_CODES:
            return PermanentError(f"{what}: access denied ({code}); check the credentials and the bucket policy")
        if code in _TEMPORARY_CODES or status >= 500:
            return TemporaryError(f"{what}: S3 answered {code or status}; retry later", delay=5.0)
        return PermanentError(f"{what}: S3 refused the request ({code or status}: {exc})")
    if isinstance(exc, BotoCoreError):
        return TemporaryError(f"{what}: {exc}; retry later", delay=5.0)
    return exc


def _is_code(exc: ClientError, *codes: str) -> bool:
    return str(exc.response.get("Error", {}).get("Code", "")) in codes


_loader_lock = threading.Lock()
_loader: Any = None


def _new_client(*, endpoint_url: str | None, region_name: str, config: Config) -> Any:
    """A client in a fresh session (credentials resolved now, by boto3's usual chain) that shares
    one botocore data loader: parsing S3's service model costs ~0.3 s, once per process."""
    global _loader
    with _loader_lock:
        core = botocore.session.Session()
        if _loader is None:
            _loader = core.get_component("data_loader")
        core.register_component("data_loader", _loader)
        return boto3.session.Session(botocore_session=core).client(
            "s3", endpoint_url=endpoint_url, region_name=region_name, config=config,
        )


@dataclass(frozen=True)
class _Index:
    data: str
    manifest_text: str
    manifest: Manifest


class S3ArtifactStore:
    """Bundles in `s3://bucket/prefix`. `endpoint_url` points at moto/MinIO; None means AWS."""

    def __init__(
        self, *, bucket: str, prefix: str = "", endpoint_url: str | None = None,
        settings: S3Settings | None = None, client: Any = None,
    ) -> None:
        settings = settings or S3Settings()
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.settings = settings
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self.endpoint_url = endpoint_url
        config = Config(
            connect_timeout=settings.connect_timeout_s, read_timeout=settings.read_timeout_s,
            retries={"max_attempts": settings.max_attempts, "mode": "standard"},
        )
        self._s3 = client or _new_client(endpoint_url=endpoint_url, region_name=settings.region_name, config=config)

    def __repr__(self) -> str:
        return f"S3ArtifactStore({self.url!r})"

    # -- low level ---------------------------------------------------------------------
    def _key(self, rest: str) -> str:
        return f"{self.prefix}/{rest}" if self.prefix else rest

    def _call(self, what: str, fn: Callable[..., T], **kwargs: Any) -> T:
        try:
            return fn(**kwargs)
        except (BotoCoreError, ClientError) as exc:
            raise map_s3_error(exc, what) from exc

    def _get(self, key: str) -> tuple[bytes, str] | None:
        """(body, etag) of an object, or None when there is no such key."""
        try:
            resp = self._s3.get_object(Bucket=self.bucket, Key=self._key(key))
            return resp["Body"].read(), str(resp["ETag"])
        except ClientError as exc:
            if _is_code(exc, "NoSuchKey", "404"):
                return None
            raise map_s3_error(exc, f"cannot read s3://{self.bucket}/{self._key(key)}") from exc
        except BotoCoreError as exc:
            raise map_s3_error(exc, f"cannot read s3://{self.bucket}/{self._key(key)}") from exc

    def _index(self, version: str) -> _Index | None:
        got = self._get(f"bundles/{check_version(version)}.json")
        if got is None:
            return None
        try:
            raw = json.loads(got[0])
            if not isinstance(raw, dict) or raw.get("format") != INDEX_FORMAT or not isinstance(raw.get("data"), str):
                raise ValueError("not a format-1 index {format, data, manifest}")
            manifest = parse_manifest(raw["manifest"])
        except (ValueError, KeyError, TypeError, ManifestError) as exc:
            raise PermanentError(f"bundle {version} in {self.url} has a broken index ({exc}); remove it from the store") from exc
        return _Index(data=raw["data"], manifest_text=raw["manifest"], manifest=manifest)

    def _before_visible(self, data_prefix: str) -> None:
        """Hook between upload and visibility; tests override it to crash there."""

    def _delete_prefix(self, rest: str) -> None:
        """Best effort clean-up of a failed upload (orphans are harmless: never listed)."""
        try:
            pages = self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self._key(rest))
            for page in pages:
                for obj in page.get("Contents", []):
                    self._s3.delete_object(Bucket=self.bucket, Key=obj["Key"])
        except (BotoCoreError, ClientError):
            pass

    # -- interface ---------------------------------------------------------------------
    def publish(self, bundle_dir: Path) -> str:
        bundle_dir = Path(bundle_dir)
        manifest = verify_integrity(bundle_dir)  # never publish a bundle that does not match its manifest
        version = manifest.bundle_version
        manifest_text = (bundle_dir / MANIFEST_NAME).read_text()
        existing = self._index(version)
        if existing is not None:
            return self._same_or_refuse(existing, manifest)
        data = f"data/{version}.{uuid.uuid4().hex[:8]}/"
        index = json.dumps({"format": INDEX_FORMAT, "data": data, "manifest": manifest_text})
        try:
            for name in sorted(manifest.files):
                with open(bundle_dir / name, "rb") as fh:
                    self._call(f"cannot upload {name}", self._s3.put_object, Bucket=self.bucket, Key=self._key(data + name), Body=fh)
            self._before_visible(data)
            self._s3.put_object(
                Bucket=self.bucket, Key=self._key(f"bundles/{version}.json"), Body=index.encode(), IfNoneMatch="*",
            )
        except ClientError as exc:
            self._delete_prefix(data)
            if _is_code(exc, "PreconditionFailed", "412"):  # someone published the same version meanwhile
                again = self._index(version)
                if again is not None:
                    return self._same_or_refuse(again, manifest)
            raise map_s3_error(exc, f"cannot publish {version}") from exc
        except BotoCoreError as exc:
            self._delete_prefix(data)
            raise map_s3_error(exc, f"cannot publish {version}") from exc
        except BaseException:
            self._delete_prefix(data)
            raise
        return version

    def _same_or_refuse(self, existing: _Index, manifest: Manifest) -> str:
        if existing.manifest != manifest:
            raise PermanentError(
                f"bundle {manifest.bundle_version} is already published with different contents; "
                "bundles are immutable: build a new version"
            )
        return manifest.bundle_version

    def list(self) -> list[BundleInfo]:
        versions: list[str] = []
        paginator = self._s3.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key("bundles/")):
                for obj in page.get("Contents", []):
                    name = obj["Key"].rsplit("/", 1)[-1]
                    if name.endswith(".json"):
                        versions.append(name[: -len(".json")])
        except (BotoCoreError, ClientError) as exc:
            raise map_s3_error(exc, f"cannot list {self.url}") from exc
        infos = [BundleInfo.from_manifest(index.manifest) for v in versions if (index := self._index(v)) is not None]
        return sorted(infos, key=lambda i: (i.created_at, i.version))

    def fetch(self, version: str, dest: Path) -> Path:
        final = Path(dest) / check_version(version)
        if final.is_dir():
            return final  # an earlier fetch finished (fetches are atomic); verify before use as always
        index = self._index(version)
        if index is None:
            raise UnknownBundle(version)
        partial = partial_dir(Path(dest), version)
        try:
            for name in sorted(index.manifest.files):
                target = partial / name
                target.parent.mkdir(parents=True, exist_ok=True)
                resp = self._call(f"cannot download {name}", self._s3.get_object, Bucket=self.bucket, Key=self._key(index.data + name))
                with open(target, "wb") as fh:
                    try:
                        shutil.copyfileobj(resp["Body"], fh, 1 << 20)
                    except BotoCoreError as exc:
                        raise map_s3_error(exc, f"download of {name} broke off") from exc
            (partial / MANIFEST_NAME).write_text(index.manifest_text)
            install_tree(partial, final)
        except OSError as exc:
            raise TemporaryError(f"cannot write {version} into {dest}: {exc}; check the disk and retry") from exc
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        return final

    def _pointer(self) -> tuple[PointerState, str | None]:
        got = self._get("pointer.json")
        return (PointerState(), None) if got is None else (PointerState.parse(got[0]), got[1])

    def current(self) -> str | None:
        return self._pointer()[0].current

    def history(self) -> PointerState:
        return self._pointer()[0]

    def _update_pointer(self, change: Callable[[PointerState], PointerState]) -> PointerState:
        """Read, change, write with If-Match/If-None-Match: a concurrent writer makes us re-read."""
        def try_once() -> PointerState | Lost:
            state, etag = self._pointer()
            new = change(state)
            condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
            try:
                self._s3.put_object(Bucket=self.bucket, Key=self._key("pointer.json"), Body=new.to_json().encode(), **condition)
                return new
            except ClientError as exc:
                if _is_code(exc, "PreconditionFailed", "412", "ConditionalRequestConflict"):
                    return LOST
                raise map_s3_error(exc, "cannot write the pointer") from exc
            except BotoCoreError as exc:
                raise map_s3_error(exc, "cannot write the pointer") from exc

        policy = CasRetry(attempts=self.settings.pointer_cas_attempts, backoff_s=0.05, max_backoff_s=0.5,
                          exhausted=lambda n: TemporaryError(
                              f"another promote or rollback changed the pointer {n} times while this one ran; retry",
                              delay=1.0))
        return policy.run(try_once)

    def promote(self, version: str) -> None:
        """Low level: move the pointer. Use promotion.promote_verified, which verifies first."""
        if self._index(version) is None:
            raise UnknownBundle(version)
        self._update_pointer(lambda state: state.promoted(version))

    def serving_plan(self) -> str | None:
        got = self._get(SERVING_PLAN)
        return None if got is None else got[0].decode()

    def put_serving_plan(self, text: str) -> None:
        self._call("cannot write the serving plan", self._s3.put_object, Bucket=self.bucket,
                   Key=self._key(SERVING_PLAN), Body=text.encode())

    def rollback(self) -> str:
        state = self._update_pointer(lambda s: s.rolled_back())
        assert state.current is not None
        return state.current
