"""`regionctl capacity plan`, run in-process through a Typer app the way regionctl/main.py wires it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from regionctl.capacity_cmds import register
from regions.errors import InputError

TWO_PER_GEO = """
[geographies.us]
peak_share = 0.5
[geographies.eu]
peak_share = 0.5
[regions.us-a]
geography = "us"
capacity_qps = 400
http_port = 18101
grpc_port = 19101
redis_port = 16401
[regions.us-b]
geography = "us"
capacity_qps = 400
http_port = 18102
grpc_port = 19102
redis_port = 16402
[regions.eu-a]
geography = "eu"
capacity_qps = 400
http_port = 18103
grpc_port = 19103
redis_port = 16403
[regions.eu-b]
geography = "eu"
capacity_qps = 400
http_port = 18104
grpc_port = 19104
redis_port = 16404
"""

CLEAN_ENV: dict[str, str | None] = {"REGIONCTL_CALIBRATION": None, "REGIONCTL_TOPOLOGY": None}


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def test_plan_prints_tables_and_the_broken_constraint(app: typer.Typer) -> None:
    result = CliRunner().invoke(app, ["capacity", "plan"], env=CLEAN_ENV)
    assert result.exit_code == 1, result.output  # infeasible (eu-west has no peer): scripts see a "no"
    assert CliRunner().invoke(app, ["capacity", "plan", "--json"], env=CLEAN_ENV).exit_code == 1
    for text in ("Instances per region", "us-east", "N-1 fleet", "personal-failover-in-geography"):
        assert text in result.output


def test_plan_json_for_a_feasible_topology(app: typer.Typer, tmp_path: Path) -> None:
    topo = tmp_path / "topology.toml"
    topo.write_text(TWO_PER_GEO)
    result = CliRunner().invoke(app, ["capacity", "plan", "--topology", str(topo), "--peak-qps", "1000", "--json"],
                                env=CLEAN_ENV)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["feasible"] is True
    assert sorted(doc["regions"]) == ["eu-a", "eu-b", "us-a", "us-b"]
    assert doc["inputs"]["peak_qps"] == 1000.0


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--peak-qps", "-5"], "peak_qps"),
        (["--target-utilisation", "0"], "target_utilisation"),
        (["--degraded-share", "2"], "degraded_share"),
        (["--calibration", "/nonexistent/calibration.json"], "calibration"),
    ],
)
def test_bad_options_raise_input_error_naming_the_field(app: typer.Typer, args: list[str], field: str) -> None:
    result = CliRunner().invoke(app, ["capacity", "plan", *args], env=CLEAN_ENV)
    assert isinstance(result.exception, InputError)
    assert result.exception.field == field
