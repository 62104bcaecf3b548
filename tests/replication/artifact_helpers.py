"""Shared pieces of the artifact-store tests: small bundles, moto's S3 server, both backends.

Imported by test_artifact_store.py, test_verifying.py and test_artifacts_cli.py (fixtures are
brought in with `from tests.replication.artifact_helpers import ...`).
"""
from __future__ import annotations

import os
import random
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from regions.processes import LOOPBACK, free_port
from replication.artifact_store import ArtifactStore, LocalArtifactStore
from replication.manifest import build_manifest, new_bundle_version, write_manifest

BASE_TIME = 1_764_072_000.0


def make_bundle(
    parent: Path, *, created_at: float = BASE_TIME, schema_version: int = 1, version: str | None = None,
    seed: int = 0, files: dict[str, bytes] | None = None,
) -> Path:
    """A small bundle: a few files of random bytes (one nested) and a manifest built over them."""
    rng = random.Random(seed)
    version = version or new_bundle_version(created_at)
    bundle = parent / version
    bundle.mkdir(parents=True)
    contents = files if files is not None else {
        "ranker.txt": rng.randbytes(3000),
        "item_embeddings.npy": rng.randbytes(5000),
        "popularity.json": b"[1, 2, 3]",
        "extra/segments.json": b'{"new": [3, 2, 1]}',
    }
    for name, data in contents.items():
        (bundle / name).parent.mkdir(parents=True, exist_ok=True)
        (bundle / name).write_bytes(data)
    manifest = build_manifest(
        bundle, bundle_version=version, created_at=created_at, schema_version=schema_version,
        data_watermark=created_at - 3600, metrics={"ndcg@10": 0.31, "recall@50": 0.52},
    )
    write_manifest(bundle, manifest)
    return bundle


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's real S3 server, in a thread, on a free loopback port."""
    from moto.server import ThreadedMotoServer

    fake = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {key: os.environ.get(key) for key in fake}
    os.environ.update(fake)  # moto accepts any credentials; never real ones
    port = free_port()
    server = ThreadedMotoServer(ip_address=LOOPBACK, port=port, verbose=False)
    server.start()
    yield f"http://{LOOPBACK}:{port}"
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def new_bucket(endpoint: str) -> str:
    import boto3

    name = f"bundles-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return name


@pytest.fixture(params=["fs", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    """The same contract runs against both backends."""
    if request.param == "fs":
        return LocalArtifactStore(tmp_path / "store")
    from replication.s3_store import S3ArtifactStore

    endpoint = request.getfixturevalue("moto_endpoint")
    return S3ArtifactStore(bucket=new_bucket(endpoint), prefix="shopnow/bundles", endpoint_url=endpoint)
