"""`regionctl bench serving` and `regionctl bench saturation`: the benchmarks that calibrate and check the
capacity model (the installed package `benchmarks`: serving_bench and saturation_bench; docs/benchmarks.md)."""
from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Optional

import typer
from rich.console import Console



def _bench(name: str) -> ModuleType:
    """benchmarks.<name>, imported when its command runs (it pulls in the serving stack)."""
    return importlib.import_module(f"benchmarks.{name}")


def register(app: typer.Typer) -> None:
    bench = typer.Typer(no_args_is_help=True, help="Benchmarks of one cell on one core; they write the capacity calibration.")

    @bench.command("serving")
    def serving(
        requests: int = typer.Option(1000, "--requests", help="Sequential requests per tier and transport."),
        as_json: bool = typer.Option(False, "--json", help="Print var/bench/serving.json instead of tables."),
        rss_sizes: str = typer.Option("demo,bench", "--rss-sizes",
                                      help="Bundle sizes to read the cell's RSS with (the bench size is trained once, minutes)."),
        proxies: bool = typer.Option(True, "--proxies/--no-proxies", help="Measure the edge and HAProxy in front of the cell."),
    ) -> None:
        """Per tier over HTTP and gRPC, the in-process floor, the edge vs HAProxy, RSS; writes var/calibration.json."""
        mod = _bench("serving_bench")
        err = Console(stderr=True)
        sizes = tuple(s.strip() for s in rss_sizes.split(",") if s.strip())
        settings = mod.ServingBenchSettings(requests=requests, rss_sizes=sizes, with_edge=proxies, with_haproxy=proxies)
        report = mod.run_serving_bench(settings, log=lambda m: err.print(f"[dim]{m}[/dim]"))
        _print(report, mod, as_json)

    @bench.command("saturation")
    def saturation(
        seconds: float = typer.Option(70.0, "--seconds", help="Total seconds under load (10..600), split over the ramp's steps."),
        calibration: Optional[Path] = typer.Option(None, "--calibration", help="Calibration to check (default var/calibration.json)."),
        as_json: bool = typer.Option(False, "--json", help="Print var/bench/saturation.json instead of tables."),
        admission_compare: bool = typer.Option(True, "--admission-compare/--no-admission-compare",
                                               help="After the ramp, one overload step with admission control on, one off."),
    ) -> None:
        """Drive one cell past saturation (open loop, HTTP) and compare with the capacity model's prediction;
        then the same overload with the cell's admission control on and off."""
        mod = _bench("saturation_bench")
        settings = mod.SaturationSettings(seconds=seconds, admission_compare=admission_compare)
        if calibration is not None:
            settings = mod.SaturationSettings(seconds=seconds, calibration_path=calibration, admission_compare=admission_compare)
        err = Console(stderr=True)
        report = mod.run_saturation_bench(settings, log=lambda m: err.print(f"[dim]{m}[/dim]"))
        _print(report, mod, as_json)

    app.add_typer(bench, name="bench")


def _print(report: object, mod: ModuleType, as_json: bool) -> None:
    from benchmarks.printing import print_report

    print_report(report, render=mod.render, summary_lines=mod.summary_lines, as_json=as_json)
