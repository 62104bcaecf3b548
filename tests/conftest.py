"""Shared fixtures: real redis-server processes on free loopback ports."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest
import redis

from regions.processes import ManagedProcess, free_port, start_redis


@pytest.fixture
def redis_factory(tmp_path: Path) -> Iterator[Callable[..., tuple[ManagedProcess, int]]]:
    """Start real redis-servers (AOF on) on free ports; all are killed at teardown."""
    started: list[ManagedProcess] = []

    def make(name: str = "redis", port: int | None = None) -> tuple[ManagedProcess, int]:
        port = port or free_port()
        proc = start_redis(port=port, data_dir=tmp_path / f"{name}-{port}", name=name)
        started.append(proc)
        return proc, port

    yield make
    for proc in started:
        proc.kill()


@pytest.fixture
def redis_server(redis_factory: Callable[..., tuple[ManagedProcess, int]]) -> tuple[ManagedProcess, int]:
    return redis_factory("redis")


@pytest.fixture
def redis_client(redis_server: tuple[ManagedProcess, int]) -> Iterator[redis.Redis]:
    _, port = redis_server
    client = redis.Redis(host="127.0.0.1", port=port, decode_responses=True)
    yield client
    client.close()


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real bundle trained once per session on the tiny synthetic marketplace (a few seconds)."""
    from tests.stack_helpers import train_tiny_bundle

    return train_tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny")


@pytest.fixture(scope="session")
def tiny_geo_bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One real tiny bundle per geography (us, eu), each trained on its own users' events only."""
    from tests.stack_helpers import train_tiny_geo_bundles

    return train_tiny_geo_bundles(tmp_path_factory.mktemp("geo-bundles"))
