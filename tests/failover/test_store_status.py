"""The controller says when its control store stops taking writes (log line, status, metrics),
whether reads fail too (quorum loss: tests/failover/test_etcd_gamedays.py) or only writes."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from failover.controller_metrics import ControllerMetrics
from failover.overrides import Overrides, SteerOverride
from failover.sqlite_store import SqliteStore
from regions.errors import TemporaryError
from tests.failover.controller_helpers import Rig, make_rig


class WritesFail(SqliteStore):
    """A real SQLite store whose fenced writes can be made to fail as a store without quorum does."""

    failing = False

    def fenced_put(self, *args: Any, **kwargs: Any) -> bool:
        if self.failing:
            raise TemporaryError("etcd: no leader (made to fail by the test)")
        return super().fenced_put(*args, **kwargs)


@pytest.fixture
def rig() -> Iterator[Rig]:
    yield from make_rig()


def test_failing_writes_are_reported_and_recovery_too(rig: Rig, tmp_path: Path) -> None:
    store = WritesFail(tmp_path / "control.db")
    lines: list[str] = []
    ctl = rig.controller(store)
    ctl._log = lines.append
    ctl.step(time.time())
    assert ctl.store_status()["writing"] is True
    store.failing = True
    now = time.time()  # an operator steer the leader must turn into a new table (a fenced write)
    steer = Overrides(steer={"us": SteerOverride(geography="us", weights={"us-east": 70, "us-west": 30},
                                                 created_at=now, expires_at=now + 3600, reason="test")})
    store.put("control/overrides", json.dumps(steer.to_dict()))
    ctl.step(time.time())
    status = ctl.store_status()
    assert (status["reachable"], status["writing"]) == (False, False) and "no leader" in status["error"]
    assert any(line.startswith("STORE-UNAVAILABLE") for line in lines)
    text = ControllerMetrics(ctl).render()[0].decode()
    assert f'shopnow_controller_writing{{controller="{ctl.holder}"}} 0.0' in text
    assert f'shopnow_controller_store_reachable{{controller="{ctl.holder}"}} 0.0' in text
    store.failing = False
    ctl.step(time.time())
    assert ctl.store_status()["writing"] is True and any(line.startswith("STORE-BACK") for line in lines)
    store.close()
