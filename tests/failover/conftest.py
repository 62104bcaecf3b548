"""Fixtures of the failover tests: one real 3-member etcd cluster per test session."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from regions.etcd_cluster import Cluster, start_cluster


@pytest.fixture(scope="session")
def etcd_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A real etcd cluster (3 members on free loopback ports, data in tmp), shared by the tests that
    only read and write keys under their own prefix. Tests that kill members start their own."""
    cluster = start_cluster(Path(tmp_path_factory.mktemp("etcd")))
    yield cluster
    cluster.stop()
