"""`regionctl load` and `regionctl gameday NAME|list|abort`: load through the edge, and game days.

Thin: parse, call one library function (chaos.load / chaos.gameday), print with rich.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from regionctl import output

out = output.console()

STATE_DIR = typer.Option(None, "--state-dir", envvar="REGIONCTL_STATE_DIR",
                         help="The stack's state directory (default: var/stack).")
TOPOLOGY = typer.Option(None, "--topology", envvar="REGIONCTL_TOPOLOGY", help="topology.toml (default: the repository's).")


def _state_dir(value: Optional[Path]) -> Path:
    from regions.stack import default_state_dir

    return value or default_state_dir()


def register(app: typer.Typer) -> None:
    @app.command("load")
    def load(
        rate: float = typer.Option(50.0, "--rate", help="Requests per second (open loop, at most 2000)."),
        duration: float = typer.Option(30.0, "--duration", help="Seconds of load (at most 3600)."),
        out_file: Optional[Path] = typer.Option(None, "--out", help="JSONL records (default: var/load-<time>.jsonl)."),
        state_dir: Optional[Path] = STATE_DIR,
        topology: Optional[Path] = TOPOLOGY,
    ) -> None:
        """Send bounded open-loop load through the edge and summarise what users saw."""
        from chaos.actions import context_from
        from chaos.gameday_io import population
        from chaos.load import LoadSpec, processes_for, read_records, run_load
        from chaos.report import empty_slates
        from chaos.probes import p99_latency, tier_mix

        ctx = context_from({"state_dir": str(_state_dir(state_dir)), "topology": str(topology or "")})
        users, items = population(ctx)
        path = out_file or ctx.state_dir.parent / f"load-{time.strftime('%Y%m%dT%H%M%S')}.jsonl"
        out.print(f"load: {rate:g} req/s for {duration:g} s through {ctx.edge_url} -> {path}")
        result = run_load(LoadSpec(base_url=ctx.edge_url, rate=rate, duration_s=duration, users=users, items=items,
                                   processes=processes_for(rate)), path,
                          progress=lambda i, n: out.print(f"  {i}/{n}") if i and i % max(int(rate * 10), 1) == 0 else None)
        records = read_records(path)
        table = Table("requests", "failed", "success %", "p99 ms", "empty slates", "tiers")
        mix = tier_mix(load_file=str(path))
        table.add_row(str(result["requests"]), str(result["failed"]),
                      f"{100 * (1 - result['failed'] / max(result['requests'], 1)):.3f}",
                      f"{p99_latency(load_file=str(path)):.1f}", str(empty_slates(records)),
                      ", ".join(f"{k} {v:.1%}" for k, v in mix.items() if v))
        out.print(table)
        out.print(f"achieved {result['achieved_rate']:.1f} of {rate:g} req/s, p99 schedule lag "
                  f"{result['p99_schedule_lag_ms'] or 0:.1f} ms" + ("" if result["valid"] else
                                                                      "; INVALID: " + "; ".join(result["invalid_reasons"])))
        if not result["valid"]:
            raise typer.Exit(1)

    @app.command("gameday-table")
    def gameday_table(runs: Path = typer.Argument(..., help="The parent directory of game-day --out-dir directories."),
                      as_markdown: bool = typer.Option(False, "--markdown", help="Print a Markdown table (as in docs/gamedays.md).")) -> None:
        """Print both RTOs, first-attempt failures, RPO, lost events, empty slates, the tier mix during the fault and
        the load achieved of every game day under RUNS."""
        from chaos.gameday_io import summarize_runs
        from chaos.gameday_table import HEADERS, markdown, row_cells

        rows = summarize_runs(runs)
        if as_markdown:
            typer.echo(markdown(rows), nl=False)
            return
        table = Table(*HEADERS)
        for row in rows:
            table.add_row(*row_cells(row))
        out.print(table)

    @app.command("gameday")
    def gameday(
        name: str = typer.Argument(..., help="An experiment name (see `regionctl gameday list`), `list` or `abort`."),
        dry: bool = typer.Option(False, "--dry", help="Print what would be hit; touch nothing."),
        load_rate: float = typer.Option(50.0, "--load-rate", help="Load through the edge, requests per second."),
        duration: float = typer.Option(90.0, "--duration",
                                       help="Seconds of load; the RTO needs 30 s of good service after recovery."),
        out_dir: Optional[Path] = typer.Option(None, "--out-dir", help="Where the journal and report go "
                                                                       "(default: var/gamedays/NAME-TIME)."),
        target: str = typer.Option("edge", "--target", help="Where the load goes: the edge, or a region's cell directly."),
        state_dir: Optional[Path] = STATE_DIR,
        topology: Optional[Path] = TOPOLOGY,
        as_json: bool = typer.Option(False, "--json", help="`gameday list`: print the experiments as JSON."),
    ) -> None:
        """Run a game day (experiment + load + RTO/RPO report), list the experiments, or abort (remove every
        registered fault, whichever run left it)."""
        from chaos import gameday as gd

        sdir = _state_dir(state_dir)
        if name == "list":
            table = Table("name", "title", "tags", "fault")
            listed = []
            for exp_name in gd.experiment_names():
                exp = gd.load_experiment(exp_name)
                faults = [a["provider"]["func"] for a in exp["method"] if a["type"] == "action"]
                listed.append({"name": exp_name, "title": exp["title"], "tags": list(exp.get("tags", [])),
                               "faults": faults})
                table.add_row(exp_name, exp["title"], ", ".join(exp.get("tags", [])), ", ".join(faults))
            running = gd.gameday_running(sdir)
            if as_json:
                output.print_json({"experiments": listed, "running": running or None})
                return
            out.print(table)
            if running:
                out.print(f"running now: {running['experiment']} (pid {running['pid']})")
            return
        if name == "abort":
            result = gd.abort_gameday(state_dir=sdir, progress=out.print)
            failed = [r["name"] for r in result["rollbacks"] if r["status"] != "succeeded"]
            out.print(f"aborted {result['experiment'] or 'no running game day'}; faults removed: "
                      + (", ".join(r["name"] for r in result["rollbacks"] if r["status"] == "succeeded") or "none")
                      + (f"; FAILED: {', '.join(failed)}" if failed else ""))
            raise typer.Exit(1 if failed else 0)
        where = out_dir or sdir.parent / "gamedays" / f"{name}-{time.strftime('%Y%m%dT%H%M%S')}"
        report = gd.run_gameday(name, state_dir=sdir, topology=topology, load_rate=load_rate, duration_s=duration,
                                out_dir=where, dry=dry, progress=out.print, target=target)
        if not dry and report["verdict"] in ("fail", "invalid"):
            raise typer.Exit(1)
