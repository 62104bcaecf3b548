"""Fixtures of the failover tests: one real 3-member etcd cluster per test session; moto's Route 53
in server mode (ThreadedMotoServer on a free loopback port), one per session (each test makes its own zone)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from regions.etcd_cluster import Cluster, start_cluster
from regions.processes import LOOPBACK, free_port


@pytest.fixture(scope="session")
def etcd_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A real etcd cluster (3 members on free loopback ports, data in tmp), shared by the tests that
    only read and write keys under their own prefix. Tests that kill members start their own."""
    cluster = start_cluster(Path(tmp_path_factory.mktemp("etcd")))
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address=LOOPBACK, port=port, verbose=False)
    server.start()
    try:
        yield f"http://{LOOPBACK}:{port}"
    finally:
        server.stop()


def route53_test_client(url: str) -> Any:
    """A boto3 Route 53 client for moto; moto accepts any credentials: these fake ones never leave loopback."""
    import boto3
    from botocore.config import Config

    return boto3.client("route53", endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing",
                        config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=5))
