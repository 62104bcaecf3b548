"""`regionctl capacity ...`: the capacity planner's operator commands. Thin: parse, plan, print."""
from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from contracts.environment import calibration_path, topology_path
from capacity.calibration import ASSUMED, load_calibration
from capacity.planner import Plan, plan_capacity, plan_to_dict, region_headroom
from capacity.settings import settings_from_env
from regionctl import output
from regions.topology import load_topology

capacity_app = typer.Typer(no_args_is_help=True, help="Capacity planning: N-1 instances per region and cost per request.")


@capacity_app.command("plan")
def plan_cmd(
    topology: Optional[Path] = typer.Option(None, "--topology", help="topology.toml (default: REGIONCTL_TOPOLOGY or the repo's)."),
    peak_qps: Optional[float] = typer.Option(None, "--peak-qps", help="Global peak QPS (default 220000)."),
    calibration: Optional[Path] = typer.Option(None, "--calibration", help="Calibration JSON (default: var/calibration.json, else the shipped assumed one)."),
    target_utilisation: Optional[float] = typer.Option(None, "--target-utilisation", help="Steady-state CPU target in (0, 1] (default 0.6)."),
    degraded_share: Optional[float] = typer.Option(None, "--degraded-share", help="Share of moved traffic a cheaper tier may serve during failover, in [0, 1] (default 0.5)."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
) -> None:
    """Plan instances per region for steady state and for the loss of any one region."""
    settings = settings_from_env(os.environ)
    overrides = {k: v for k, v in (("peak_qps", peak_qps), ("target_utilisation", target_utilisation)) if v is not None}
    if degraded_share is not None:
        overrides["failover"] = replace(settings.failover, degraded_share=degraded_share)
    settings = replace(settings, **overrides)  # type: ignore[arg-type]
    plan = plan_capacity(load_topology(topology_path(os.environ, topology)), load_calibration(calibration_path(os.environ, calibration)), settings)
    if as_json:
        typer.echo(json.dumps(plan_to_dict(plan), indent=2))
    else:
        render_plan(plan, output.console())
    if not plan.feasible:
        raise typer.Exit(code=1)  # scripts: an infeasible plan is a "no" (regionctl.output's exit codes)


def render_plan(plan: Plan, console: Console) -> None:
    """Print the plan as rich tables."""
    s, cal = plan.settings, plan.calibration
    source_style = "bold yellow" if cal.source == ASSUMED else "green"
    console.print(
        f"Peak {s.peak_qps:,.0f} QPS, {s.instance.name} ({s.instance.vcpus} vCPU, ${s.instance.hourly_usd:g}/h, assumed price), "
        f"target utilisation {s.target_utilisation:.0%}, failover cap {s.failover.max_utilisation:.0%}"
    )
    console.print(f"Calibration: {cal.machine} [{source_style}]({cal.source})[/]; "
                  + ", ".join(f"{t} {c.cpu_ms:g} ms" for t, c in cal.tiers.items()))
    console.print(f"Failover: {s.failover.degraded_share:.0%} of moved traffic on the {s.failover.degraded_tier} tier "
                  f"for up to {s.failover.degraded_window_s / 60:g} min; traffic leaving its geography at the "
                  f"{s.failover.cross_geo_tier} tier")

    regions = Table(title="Instances per region")
    for col in ("region", "geo", "steady QPS", "steady", "N-1", "sized for", "steady util", "headroom QPS"):
        regions.add_column(col, justify="left" if col in ("region", "geo", "sized for") else "right")
    for name, r in plan.regions.items():
        regions.add_row(name, r.geography, f"{r.steady_qps:,.0f}", str(r.steady_instances), str(r.instances),
                        r.sized_for, f"{r.steady_utilisation:.0%}", f"{region_headroom(plan, name):,.0f}")
    console.print(regions)

    scenarios = Table(title="Loss of one region (during the degraded window)")
    for col in ("lost", "survivor", "QPS", "needed", "utilisation", "scale-out", "ok"):
        scenarios.add_column(col, justify="left" if col in ("lost", "survivor", "ok") else "right")
    for sc in plan.scenarios:
        if not sc.loads:
            scenarios.add_row(sc.failed_region, "-", "-", "-", "-", "-", "[red]no[/]")
        for survivor, load in sc.loads.items():
            ok = "[green]yes[/]" if sc.ok else "[red]no[/]"
            scenarios.add_row(sc.failed_region, survivor, f"{load.qps:,.0f}", str(sc.needed[survivor]),
                              f"{sc.utilisation[survivor]:.0%}", str(sc.scale_out.get(survivor, 0)), ok)
    console.print(scenarios)

    within = plan.cost_per_request_usd <= s.budget_usd_per_request
    console.print(
        f"N-1 fleet: {plan.total_instances} instances (steady state alone: {plan.steady_only_instances}), "
        f"${plan.hourly_usd:,.2f}/h, ${plan.cost_per_request_usd:.3g} per request at peak "
        f"({'[green]within[/]' if within else '[red]over[/]'} the ${s.budget_usd_per_request:g} budget)"
    )
    console.print(
        f"Naive (every region takes the whole peak at full ranking): {plan.naive_instances} instances, "
        f"${plan.naive_hourly_usd:,.2f}/h; the plan saves {plan.saving:.1%}"
    )
    if plan.feasible:
        console.print("[green]Feasible:[/] every single-region loss is absorbed within the utilisation cap.")
    for b in plan.breaches:
        console.print(f"[red]{b.constraint}[/]: {b.message}")


def register(app: typer.Typer) -> None:
    """Add `regionctl capacity ...` to the main app."""
    app.add_typer(capacity_app, name="capacity")
