"""`regionctl demo` (what `make demo` runs): train and evaluate the demo bundle, publish it, start
the local three-region stack, put steady load on it, kill a region in a Chaos Toolkit game day,
print both measured RTOs, the first-attempt failure rate and the RPO, and stop the stack."""
from __future__ import annotations

import os
import time

import typer
from rich.console import Console

from contracts.environment import topology_path
from regions import stack
from regionctl.stack_specs import stack_specs
from regions.topology import REPO_ROOT, default_topology_path, load_topology

console = Console()


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        load_rate: float = typer.Option(40.0, "--load-rate", help="Requests per second through the edge during the game day."),
        duration: float = typer.Option(75.0, "--duration", help="Seconds of load (15 s steady, then the region dies)."),
        train_first: bool = typer.Option(True, "--train/--no-train", help="Train, evaluate and publish a fresh demo bundle first."),
    ) -> None:
        """Train + evaluate, then a region-loss game day on the local stack, with RTO and RPO."""
        from chaos.gameday import run_gameday
        from failover.control_api import ControlClient
        from chaos.report import summary_lines
        from regionctl.stack_cmds import ensure_bundle
        from regionctl.train_cmds import train
        from chaos.probes import residency_audit
        from regionctl.geo_bundles import publish_geographies

        started = time.monotonic()
        topo_path = topology_path(os.environ) or default_topology_path()
        topo = load_topology(topo_path)
        state = stack.default_state_dir().resolve()
        urls = stack.stack_urls(state)
        if train_first:
            console.rule("1. train and evaluate one demo bundle per geography")
            out = REPO_ROOT / "var" / "bundles" / f"demo-{int(time.time())}"
            bundles = train(size="demo", seed=7, data="synthetic", max_users=None, out=out, topology=topo_path, geo=None,
                            tombstones=True)
            versions = publish_geographies(urls.artifacts, topo, bundles)
            console.print(f"published and promoted {', '.join(f'{g}: {v}' for g, v in versions.items())} to {urls.artifacts} (one store per geography)")
        else:
            ensure_bundle(urls.artifacts, topology=topo, progress=lambda m: console.print(f"[dim]{m}[/dim]"))
        console.rule("2. start the local stack")
        try:
            stack.up(stack_specs(topo, state_dir=state, urls=urls), topology_path=topo_path, state_dir=state, progress=lambda m: console.print(f"[dim]{m}[/dim]"))
            ControlClient(f"http://{topo.settings.host}:{topo.settings.controller_port}",
                          stack.token_for(state, "viewer")).wait_until_healthy()
            console.rule("3. region-loss game day (Chaos Toolkit)")
            out_dir = REPO_ROOT / "var" / "gamedays" / f"demo-region-loss-{time.strftime('%Y%m%dT%H%M%S')}"
            report = run_gameday("region-loss", state_dir=state, topology=topo_path, load_rate=load_rate,
                                 duration_s=duration, out_dir=out_dir, progress=lambda m: console.print(f"[dim]{m}[/dim]"))
            console.rule("4. residency audit (every region's Redis, every cell's bundle cache)")
            residency = residency_audit({"state_dir": str(state), "topology": str(topo_path)})
            verdict = "[green]clean[/]" if residency["clean"] else f"[red]{residency['total_findings']} violations[/] {residency['findings'][:5]}"
            scanned = ", ".join(f"{r}: {c['keys']} keys" for r, c in sorted(residency["scanned"].items()))
            console.print(f"residency audit: {verdict} ({scanned}); `regionctl residency audit` for the details")
        finally:
            console.rule("5. stop the stack")
            stack.down(state_dir=state, progress=lambda m: console.print(f"[dim]{m}[/dim]"))
        console.rule("game day report")
        load, rto, rpo = report["load"], report["rto"], report["rpo"]
        quality, edge = report["quality_rto"] or {}, report["edge"] or {}
        for label, fig in (("availability RTO", rto), ("quality RTO", quality)):
            console.print(f"{label}: {fig['seconds']:.2f} s" if fig.get("status") == "met"
                          else f"{label}: {fig.get('status', 'not measured')} ({fig.get('reason', '-')})")
        console.print("first-attempt failure rate through the edge: "
                      + (f"{edge['first_attempt_failure_rate']:.2%} of {edge['reads']} reads after the fault, "
                         f"retried {edge['retry_rate']:.2%}" if edge.get("reads") else "not measured (no read listed its attempts)"))
        if rpo is None or rpo["seconds"] is None:
            console.print(f"RPO: not measured ({(rpo or {}).get('reason', 'no region lost')})")
        else:
            console.print(f"RPO: {rpo['seconds']:.2f} s; acknowledged events lost: {rpo['lost']} of {rpo['acknowledged']}")
        console.print(f"requests: {load['requests']}, success {load['success_rate']:.3%}, p99 {load['p99_ms']:.1f} ms, "
                      f"empty homepage slates: {load['empty_slates']}")
        console.print(f"tier mix: {load['tiers']}")
        for line in summary_lines(report):
            console.print(line)
        console.print(f"report: {out_dir / 'report.md'} (+ report.png, report.json, journal.json)")
        console.print(f"demo finished in {time.monotonic() - started:.0f} s")
        if report["verdict"] == "incomplete":
            console.print("[yellow]verdict incomplete:[/] a target could not be judged within this run's "
                          f"{duration:g} s of load (e.g. the quality RTO's budget is longer); "
                          "`--duration` runs it longer. Exit code 0: nothing failed.")
        if report["verdict"] not in ("pass", "incomplete") or not residency["clean"]:
            raise typer.Exit(1)
