"""The artifact-store factory: a URL -> an open store.

    file:///abs/path        replication.artifact_store.LocalArtifactStore
    s3://bucket/prefix      replication.s3_store.S3ArtifactStore (boto3 is imported only then)

Kept out of artifact_store.py (the protocol, the pointer and the local store) so that s3_store can
build on artifact_store without a circle.
"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from regions.errors import InputError
from replication.artifact_store import ArtifactStore, LocalArtifactStore


def store_from_url(url: str, *, endpoint_url: str | None = None) -> ArtifactStore:
    """`file:///abs/path` -> LocalArtifactStore; `s3://bucket/prefix` -> S3ArtifactStore."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise InputError("store", f"{url!r} names a host; use file:///absolute/path")
        if not parsed.path.startswith("/"):
            raise InputError("store", f"{url!r} is not absolute; use file:///absolute/path")
        if endpoint_url:
            raise InputError("s3_endpoint", "applies to s3:// stores only; drop it or use an s3:// store")
        return LocalArtifactStore(Path(unquote(parsed.path)))
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise InputError("store", f"{url!r} has no bucket; use s3://bucket/prefix")
        from replication.s3_store import S3ArtifactStore  # boto3 is imported only when S3 is used

        return S3ArtifactStore(bucket=parsed.netloc, prefix=parsed.path.strip("/"), endpoint_url=endpoint_url)
    raise InputError("store", f"{url!r} is not a store URL; use file:///absolute/path or s3://bucket/prefix")
