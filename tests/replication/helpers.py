"""Shared by the replication tests: a topology built in code on free ports, with real redis-servers."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest
import redis

from benchmarks.redis_stack import (  # noqa: F401  (re-exported for the replication tests)
    TWO_PLUS_TWO, US_EU, Stack, make_topology, paper_topology, start_stack, topology_toml,
)
from contracts.events import Event
from regions.processes import ManagedProcess

@pytest.fixture
def stack_factory(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], Stack]]:
    """Start one real redis-server (AOF on) per region of a layout; everything is killed at teardown."""
    started: list[ManagedProcess] = []
    stacks: list[Stack] = []

    def make(layout: dict[str, str] = US_EU) -> Stack:
        stack = start_stack(tmp_path / f"stack{len(stacks)}", layout, started)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        for client in stack.clients.values():
            client.close()
    for proc in started:
        proc.kill()


def event(user: str, item: str = "item-1", *, etype: str = "view", ts: float = 1_700_000_000.0, seq: int = -1,
          price: float = 0.0) -> Event:
    geo = user.partition("-")[0]
    return Event(event_id=f"{user}-{seq}-{item}", user_id=user, item_id=item, type=etype, ts=ts, geo=geo,
                 session_id=f"s-{user}", seq=seq, price=price)


def stream_ids(client: redis.Redis, stream: str) -> list[str]:
    return [i.decode() for i, _ in client.xrange(stream)]
