"""The CLI as scripts use it, run as real subprocesses outside the repository root: reading never
creates a store, --json everywhere, full width when piped, exit codes, human times."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from failover.journal import Action, Journal
from failover.sqlite_store import SqliteStore
from regionctl import output
from regions.topology import REPO_ROOT


def regionctl(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("REGIONCTL_")}
    return subprocess.run([sys.executable, "-m", "regionctl.main", *args], cwd=cwd, capture_output=True, text=True,
                          env={**base, "PYTHONPATH": str(REPO_ROOT), "COLUMNS": "80", **(env or {})}, timeout=120,
                          check=False)


def test_journal_verify_without_a_store_errors_and_creates_nothing(tmp_path: Path) -> None:
    state = tmp_path / "stack"
    done = regionctl("journal", "--verify", cwd=tmp_path, env={"REGIONCTL_STATE_DIR": str(state)})
    assert done.returncode == 2, done.stdout + done.stderr
    assert "no control store at" in done.stderr and "regionctl up" in done.stderr
    assert "journal OK" not in done.stdout
    assert not (state / "control.db").exists() and list(tmp_path.iterdir()) == []


def test_journal_reads_the_stacks_store_by_default_with_json_and_human_times(tmp_path: Path) -> None:
    state = tmp_path / "stack"
    state.mkdir()
    with SqliteStore(state / "control.db") as store:
        Journal(store).append(actor="director:dan", action=Action.NOTE, reason="drain until 1764633600 (a test)",
                              inputs={"region": "us-east"})
    env = {"REGIONCTL_STATE_DIR": str(state)}
    shown = regionctl("journal", "--json", cwd=tmp_path, env=env)
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert [e["actor"] for e in doc["entries"]] == ["director:dan"] and doc["store"].endswith("stack/control.db")
    verified = json.loads(regionctl("journal", "--verify", "--json", cwd=tmp_path, env=env).stdout)
    assert verified["ok"] is True
    table = regionctl("journal", cwd=tmp_path, env=env).stdout
    assert "2025-12-02 00:00:00 UTC" in table and "1764633600" not in table  # the reason, in words


def test_piped_output_is_not_folded_at_80_columns(tmp_path: Path) -> None:
    done = regionctl("gameday", "list", cwd=tmp_path, env={"REGIONCTL_STATE_DIR": str(tmp_path / "s")})
    assert done.returncode == 0, done.stderr
    line = next(l for l in done.stdout.splitlines() if "region-loss" in l)
    assert "kill_region" in line and len(line) > 80  # name, title, tags and fault on one line
    listed = json.loads(regionctl("gameday", "list", "--json", cwd=tmp_path,
                                  env={"REGIONCTL_STATE_DIR": str(tmp_path / "s")}).stdout)
    assert "region-loss" in {e["name"] for e in listed["experiments"]} and listed["running"] is None


def test_ps_json_of_a_stack_that_never_started(tmp_path: Path) -> None:
    done = regionctl("ps", "--json", cwd=tmp_path, env={"REGIONCTL_STATE_DIR": str(tmp_path / "s")})
    assert done.returncode == 0 and json.loads(done.stdout)["processes"] == []


def test_times_in_words() -> None:
    assert output.when(0) == "1970-01-01 00:00:00 UTC"
    assert output.in_words(86399) == "23h 59m" and output.in_words(250) == "4m 10s" and output.in_words(5) == "5s"
    assert output.humanize("held until 1764633600.25, 3 failures") == "held until 2025-12-02 00:00:00 UTC, 3 failures"
    assert output.humanize("version 12, 300 s") == "version 12, 300 s"
