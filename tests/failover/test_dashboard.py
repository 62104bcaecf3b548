"""The controller's live dashboard (/ui) in a real headless chromium (Debian's, via chromedriver):
a real controller looping over STAND-IN cells (tests/failover/standin_cell.py), its control API on
a real uvicorn server, asserting on the rendered page. Screenshots: var/test-artifacts/."""
from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
import uvicorn

from chaos.measurement import Rpo, Rto
from chaos.report import build_report, write_report
from failover.auth import TokenBook, parse_tokens
from failover.control_api import create_app
from failover.controller import Controller
from failover.dashboard import gameday_summaries
from failover.drill_runner import DrillRunner
from failover.sqlite_store import SqliteStore
from regions.processes import free_port, port_open, wait_until
from tests.browser import cell_text, headless_chromium, screenshot, wait_for
from tests.failover.controller_helpers import Rig, make_rig

pytestmark = pytest.mark.slow

VIEWER, DIRECTOR = "v" * 24, "d" * 24
TOKENS = {VIEWER: {"role": "viewer", "name": "vera"}, DIRECTOR: {"role": "director", "name": "dan"}}


def write_gameday(directory: Path) -> None:
    """A game-day report written by the project's own report writer (report.json + report.png)."""
    t0 = time.time() - 120
    records = [{"t": t0 + i * 0.5, "ok": True, "latency_ms": 20.0 + (i % 7), "tier": "full", "region": "us-west",
                "items": 8} for i in range(200)]
    report = build_report(experiment="region-loss", title="Region loss: us-east", records=records, fault_at=t0 + 30,
                          rto=Rto(status="met", seconds=3.25, recovered_at=t0 + 33.25, reason="test"),
                          rpo=Rpo(status="measured", seconds=0.0, lost=0, acknowledged=40, newest_durable_at=t0 + 30), status="completed")
    write_report(report, directory / "region-loss-test")


class Served:
    def __init__(self, url: str, controller: Controller, rig: Rig) -> None:
        self.url, self.controller, self.rig = url, controller, rig


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("dashboard")
    write_gameday(root / "gamedays")
    for rig in make_rig():
        store = SqliteStore(root / "control.db")
        ctl = rig.controller(store, holder="ctl-a")
        app = create_app(controller=ctl, tokens=TokenBook(parse_tokens(TOKENS)),
                         drills=DrillRunner(ctl, reports_dir=root / "drills"), gamedays=root / "gamedays")
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        stop = threading.Event()
        threads = [threading.Thread(target=server.run, daemon=True),
                   threading.Thread(target=ctl.run, kwargs={"stop": stop.is_set}, daemon=True)]
        for t in threads:
            t.start()
        try:
            wait_until(lambda: port_open(port) and ctl.last is not None, timeout=20, what="controller API up")
            yield Served(f"http://127.0.0.1:{port}", ctl, rig)
        finally:
            stop.set()
            ctl.poke()
            server.should_exit = True
            for t in threads:
                t.join(timeout=10)
            store.close()


def state_of(driver: Any, region: str) -> str:
    return cell_text(driver, f'#regions tr[data-region="{region}"] td.state')


def test_gameday_summaries_read_the_reports(tmp_path: Path) -> None:
    write_gameday(tmp_path)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "report.json").write_text("{not json")
    [found] = gameday_summaries(tmp_path)
    assert (found["name"], found["verdict"], found["rto_s"], found["has_plot"]) == ("region-loss-test", "pass", 3.25, True)


def test_a_viewer_sees_regions_journal_and_game_days_live_and_may_not_change(served: Served) -> None:
    with headless_chromium() as driver:
        driver.get(f"{served.url}/ui#token={VIEWER}")
        wait_for(driver, lambda d: state_of(d, "us-east") == "healthy", what="regions rendered")
        assert "#token" not in driver.current_url  # the token left the address bar
        assert {state_of(driver, r) for r in ("us-east", "us-west", "eu-west")} == {"healthy"}
        weights = [cell_text(driver, f'#regions tr[data-region="{r}"] td.weight') for r in ("us-east", "us-west")]
        assert sorted(int(w) for w in weights) == [50, 50]
        assert "steering normally" in cell_text(driver, "#fail-static")
        wait_for(driver, lambda d: "leader_change" in cell_text(d, "#journal"), what="the journal")
        wait_for(driver, lambda d: d.execute_script(
            "const i = document.querySelector('#gamedays img'); return i && i.complete && i.naturalWidth > 0;"),
            what="the game-day plot")
        assert "region-loss-test" in cell_text(driver, "#gamedays") and "3.25" in cell_text(driver, "#gamedays")
        polls = int(driver.execute_script("return document.body.dataset.polls"))
        wait_for(driver, lambda d: int(d.execute_script("return document.body.dataset.polls")) > polls, what="a poll")
        served.rig.cells["us-west"].mode = "unready"  # live: the page shows it without a reload
        try:
            wait_for(driver, lambda d: state_of(d, "us-west") == "unhealthy", what="us-west unhealthy on the page")
            wait_for(driver, lambda d: cell_text(d, '#regions tr[data-region="us-east"] td.weight') == "100",
                     what="us-east takes the geography")
            screenshot(driver, "dashboard-region-unhealthy.png")
        finally:
            served.rig.cells["us-west"].mode = "ok"
        driver.find_element("css selector", "#drain-form input[name=reason]").send_keys("viewer tries")
        driver.find_element("css selector", "#drain-form button").click()
        wait_for(driver, lambda d: "refused" in cell_text(d, "#answer"), what="the refusal")
        assert "HTTP 403" in cell_text(driver, "#answer") and "viewer" in cell_text(driver, "#answer")
        assert served.controller.read_table() is not None and not served.controller.last.snapshot.overrides.drains


def test_a_director_drains_through_the_safety_rules(served: Served) -> None:
    # us-west's unready spell also made its probe windows slow: the controller ejected it as a
    # latency outlier and (rightly) refuses to drain us-east until 3 good windows bring it back
    wait_until(lambda: served.controller.last.health["us-west"].state.value == "healthy"
               and not served.controller.last.health["us-west"].outlier.ejected, timeout=60,
               what="us-west healthy again and no longer a latency outlier")
    with headless_chromium() as driver:
        driver.get(f"{served.url}/ui#token={DIRECTOR}")
        wait_for(driver, lambda d: state_of(d, "us-east") == "healthy", what="regions rendered")
        form = "#drain-form"
        driver.execute_script(f"document.querySelector('{form} select').value = 'us-east'")
        driver.find_element("css selector", f"{form} input[name=reason]").send_keys("dashboard test")
        driver.find_element("css selector", f"{form} button").click()
        wait_for(driver, lambda d: "drain:" in cell_text(d, "#answer") or "refused" in cell_text(d, "#answer"),
                 what="the drain's answer")
        assert "drain: accepted" in cell_text(driver, "#answer"), cell_text(driver, "#answer")
        wait_for(driver, lambda d: state_of(d, "us-east") == "drained", what="us-east drained on the page")
        overrides = cell_text(driver, "#overrides")
        assert "director:dan" in overrides and "dashboard test" in overrides
        assert re.search(r"\(in (59m \d+s|1h 0m)\)", overrides), overrides  # the 1 h ttl, in words
        # the same safety rules as the CLI: draining the last region of the geography is refused
        driver.execute_script(f"document.querySelector('{form} select').value = 'us-west'")
        driver.find_element("css selector", f"{form} button").click()
        wait_for(driver, lambda d: "refused" in cell_text(d, "#answer"), what="the safety refusal")
        assert "HTTP 422" in cell_text(driver, "#answer")
        screenshot(driver, "dashboard-drained.png")
        undrain = "#undrain-form"
        driver.execute_script(f"document.querySelector('{undrain} select').value = 'us-east'")
        driver.find_element("css selector", f"{undrain} input[name=reason]").send_keys("dashboard test over")
        driver.find_element("css selector", f"{undrain} button").click()
        wait_for(driver, lambda d: "undrain: accepted" in cell_text(d, "#answer"), what="the undrain accepted")
        wait_for(driver, lambda d: state_of(d, "us-east") == "healthy", what="us-east back (its failback holds "
                 "are 0.2 s here, faster than a poll)")
        wait_for(driver, lambda d: "dashboard test over" in cell_text(d, "#journal"), what="the undrain journaled")
        steer = "#steer-form"
        driver.find_element("css selector", f"{steer} input[name=reason]").send_keys("dashboard steer")
        weights = driver.find_element("css selector", f"{steer} input[name=weights]")
        weights.send_keys("us-east=70,us-west=40")  # 110 %: the safety rules refuse it
        driver.find_element("css selector", f"{steer} button").click()
        wait_for(driver, lambda d: "steer refused: HTTP 422" in cell_text(d, "#answer"), what="the steer refused")
        weights.clear()
        weights.send_keys("us-east=70,us-west=30")
        driver.find_element("css selector", f"{steer} button").click()
        wait_for(driver, lambda d: "steer: accepted" in cell_text(d, "#answer"), what="the steer accepted")
        wait_for(driver, lambda d: cell_text(d, '#regions tr[data-region="us-east"] td.weight') == "70"
                 and cell_text(d, '#regions tr[data-region="us-west"] td.weight') == "30", what="the steered weights")
        wait_for(driver, lambda d: "dashboard steer" in cell_text(d, "#overrides"),
                 what=f"the steer listed; journal: {cell_text(driver, '#journal')[:1500]}")
    httpx.delete(f"{served.url}/v1/steer/us", params={"reason": "dashboard test over"},
                 headers={"Authorization": f"Bearer {DIRECTOR}"}, timeout=5).raise_for_status()
    assert "us-east" not in served.controller.last.snapshot.overrides.drains
