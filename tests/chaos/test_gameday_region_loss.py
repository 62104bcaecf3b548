"""A short region-loss game day against the real local stack (about 90 s).

Real processes everywhere: redis-servers, cells, replicators, feature updaters, two controllers,
the edge; the Chaos Toolkit experiment chaos/experiments/region-loss.json SIGKILLs us-east; RTO
and RPO are computed from the load records and the survivors' replica streams. Asserts the
product's bounds and our targets: RTO <= 15 s, RPO <= 2 s, zero empty homepage slates, and that
acknowledged events were actually measured (a measurement over nothing proves nothing).
While us-east is down, the controller's dashboard (/ui) is loaded in a real headless chromium and
must show it unhealthy with its weight moved; the screenshot is kept as
var/test-artifacts/dashboard-region-loss-gameday.png, and one of the finished report as
var/test-artifacts/dashboard-gameday-report.png.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from chaos.gameday import run_gameday
from regions import stack
from regionctl.stack_specs import stack_specs
from failover.control_api import ControlClient
from regions.topology import load_topology
from tests.browser import cell_text, headless_chromium, screenshot, wait_for
from tests.stack_helpers import publish_geo_bundles, write_topology

pytestmark = pytest.mark.slow


def watch_the_dashboard(api: str, token: str, seen: dict[str, Any], stop: threading.Event,
                        opened: threading.Event) -> None:
    """Open /ui before the game day (the browser's start-up is paid before the fault), then keep
    what the page shows once it marks us-east unhealthy: the page polls the control API itself."""
    try:
        with headless_chromium() as driver:
            driver.get(f"{api}/ui#token={token}")
            row = '#regions tr[data-region="us-east"]'
            wait_for(driver, lambda d: cell_text(d, f"{row} td.state") == "healthy", timeout=30, what="the dashboard")
            opened.set()
            wait_for(driver, lambda d: stop.is_set() or cell_text(d, f"{row} td.state") == "unhealthy", timeout=240,
                     what="us-east unhealthy on the dashboard")
            wait_for(driver, lambda d: stop.is_set() or cell_text(d, f"{row} td.weight") == "0", timeout=30,
                     what="us-east's weight moved on the dashboard")
            seen["state"] = cell_text(driver, f"{row} td.state")
            seen["weight"] = cell_text(driver, f"{row} td.weight")
            seen["peer_weight"] = cell_text(driver, '#regions tr[data-region="us-west"] td.weight')
            seen["journal"] = cell_text(driver, "#journal")
            seen["screenshot"] = screenshot(driver, "dashboard-region-loss-gameday.png")
    except Exception as exc:  # reported by the test's assertions
        seen["error"] = repr(exc)
    finally:
        opened.set()


def test_region_loss_game_day_meets_rto_rpo_and_never_empties_the_homepage(tmp_path: Path, tiny_geo_bundles: dict[str, Path]) -> None:
    topo_file = write_topology(tmp_path / "topology.toml")
    topo = load_topology(topo_file)
    state = tmp_path / "stack"
    out = tmp_path / "gamedays" / "region-loss-test"  # <state>/../gamedays: where the dashboard looks
    urls = stack.stack_urls(state)
    publish_geo_bundles(tiny_geo_bundles, Path(urls.artifacts.removeprefix("file://")))
    try:
        stack.up(stack_specs(topo, state_dir=state, urls=urls), topology_path=topo_file, state_dir=state)
        api, viewer = f"http://127.0.0.1:{topo.settings.controller_port}", stack.token_for(state, "viewer")
        ControlClient(api, viewer).wait_until_healthy()
        seen: dict[str, Any] = {}
        stop, opened = threading.Event(), threading.Event()
        watcher = threading.Thread(target=watch_the_dashboard, args=(api, viewer, seen, stop, opened), daemon=True)
        watcher.start()
        opened.wait(timeout=60)
        try:
            report = run_gameday("region-loss", state_dir=state, topology=topo_file, load_rate=40, duration_s=70,
                                 out_dir=out, progress=lambda m: None, warmup_s=15)
        finally:
            stop.set()
            watcher.join(timeout=60)
        with headless_chromium() as driver:  # the finished game day, on the dashboard, with its plot
            driver.get(f"{api}/ui#token={viewer}")
            wait_for(driver, lambda d: d.execute_script(
                "const i = document.querySelector('#gamedays img'); return i && i.complete && i.naturalWidth > 0;"),
                what="the game-day report and plot on the dashboard")
            listed = cell_text(driver, "#gamedays")
            screenshot(driver, "dashboard-gameday-report.png")
    finally:
        stack.down(state_dir=state)
    print(f"\nregion-loss game day: RTO {report['rto']}, RPO {report['rpo']}, load {report['load']}")
    assert "error" not in seen, seen.get("error")
    assert seen["state"] == "unhealthy" and seen["weight"] == "0" and seen["peer_weight"] == "100", seen
    assert "unhealthy" in seen["journal"] and seen["screenshot"].exists()
    assert "region-loss-test" in listed and report["verdict"] in listed
    assert report["status"] == "completed"
    assert report["rto"]["measured"] and report["rto"]["seconds"] <= 15.0
    assert report["rpo"]["acknowledged"] >= 20, "too few acknowledged events in the lost region to measure an RPO"
    assert report["rpo"]["seconds"] <= 2.0
    assert report["load"]["empty_slates"] == 0
    assert all(v["status"] == "pass" for v in report["verdicts"])
    for name in ("report.json", "report.md", "report.png", "journal.json", "load.jsonl"):
        assert (out / name).exists(), name
