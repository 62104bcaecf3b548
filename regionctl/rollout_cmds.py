"""`regionctl rollout start VERSION | status | abort`: a bundle rollout the controller leader drives.

    start VERSION [--geo G] [--stages shadow,1%,10%,50%,100%] [--hold 10m] [--min-requests N] ...
        checks that VERSION is published in the geography's artifact store and verifies (checksums,
        schema, semantic checks, residency: a bundle that fails is never rolled out), then writes
        the plan to the control store (rollout/<geo>, compare-and-set) and journals rollout_start.
        The leader takes it from there (failover.rollout_driver).
    status [--geo G] [--json]   the plan, its stage, the serving plan the cells follow, the newest
                                gate evaluation and the evidence of each stage ended
    abort [--geo G] --reason R  stops a running rollout; the cells drop the candidate at their next poll

Exit codes: 0 done; 1 (status) a rollout of the geography was rolled back; 2 refused.
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any, NoReturn, Optional

import typer
from rich.console import Console
from rich.table import Table

from contracts.serving_plan import parse_serving_plan
from failover.control_stores import store_from_url as control_store_from_url
from failover.journal import Action, Journal
from failover.rollout_plan import DEFAULT_STAGES, abort, new_plan
from failover.rollout_store import change_plan, read_gate, read_plan
from regionctl import output
from regionctl.artifacts_cmds import DEFAULT_STORE, _run, _topology, _user, load_checks
from regions import stack
from regions.errors import InputError
from replication.geo_artifacts import open_geo_store
from replication.verifying import verify_bundle

rollout_app = typer.Typer(no_args_is_help=True, help="Bundle rollouts: shadow, canaries, gates, automatic rollback.")
out = Console()

STORE = typer.Option(DEFAULT_STORE, "--store", envvar="REGIONCTL_ARTIFACTS", help="Artifact store (file:// or s3://).")
CONTROL = typer.Option(None, "--control-store", envvar="REGIONCTL_CONTROL_STORE",
                       help="Control store URL (default: the local stack's).")
GEO = typer.Option(None, "--geo", help="The geography (default: the one whose store holds the version / that has a rollout).")
TOPOLOGY = typer.Option(None, "--topology", help="topology.toml (default REGIONCTL_TOPOLOGY or the repo's).")


def control_url(url: Optional[str]) -> str:
    return url or stack.stack_urls(stack.default_state_dir()).control_store


def _geo_of(version: str, store: str, topology: Optional[Path]) -> str:
    topo = _topology(topology)
    holding = [g for g in sorted(topo.geographies) if any(i.version == version for i in open_geo_store(store, g).list())]
    if len(holding) != 1:
        raise InputError("--geo", f"{version} is published in {holding or 'no geography'}; name one with --geo")
    return holding[0]


@rollout_app.command("start")
def start_cmd(
    version: str = typer.Argument(..., help="A bundle published in the geography's store."),
    geo: Optional[str] = GEO,
    stages: str = typer.Option(DEFAULT_STAGES, "--stages", help="shadow (optional, first), then increasing shares ending at 100%."),
    hold: str = typer.Option("10m", "--hold", help="Least time per stage (e.g. 30s, 10m)."),
    min_requests: Optional[int] = typer.Option(None, "--min-requests", min=1, help="Candidate requests before the SLO gates judge."),
    min_shadow: Optional[int] = typer.Option(None, "--min-shadow", min=1, help="Shadow comparisons before the shadow gates judge."),
    min_impressions: Optional[int] = typer.Option(None, "--min-impressions", min=1, help="Impressions per bundle before the quality gates judge."),
    min_users: Optional[int] = typer.Option(None, "--min-users", min=1, help="Distinct users per bundle before the quality gates judge."),
    store: str = STORE, control_store: Optional[str] = CONTROL, topology: Optional[Path] = TOPOLOGY,
) -> None:
    """Start rolling VERSION out in a geography; the controller leader drives it stage by stage."""
    from failover.control_api import parse_duration
    from serving.bundle_residency import residency_check

    hold_s = _run(lambda: parse_duration(hold, field="hold"))
    geo = geo or _run(lambda: _geo_of(version, store, topology))
    artifacts = _run(lambda: open_geo_store(store, geo, topology=_topology(topology)))
    checks = _run(lambda: load_checks(None, False))
    with tempfile.TemporaryDirectory(prefix="regionctl-rollout-") as tmp:
        local = _run(lambda: artifacts.fetch(version, Path(tmp)))
        _run(lambda: verify_bundle(local, supported_schema_versions=checks.schema_versions,
                                   semantic_checks=(*checks.checks, residency_check(_topology(topology), geo))))
    baseline = _run(artifacts.current)
    gate = {k: v for k, v in (("min_requests", min_requests), ("min_shadow", min_shadow),
                              ("quality_min_impressions", min_impressions), ("quality_min_users", min_users))
            if v is not None}

    def begin(old: Any) -> Any:
        if old is not None and old.running:
            raise InputError("rollout", f"{old.version} is rolling out in {geo} (stage {old.stage.name}); "
                                        f"abort it first with `regionctl rollout abort --geo {geo} --reason ...`")
        return new_plan(geo=geo, version=version, baseline=baseline, stages=stages, hold_s=float(hold_s or 0),
                        now=time.time(), actor=f"regionctl:{_user()}", gate=gate)

    with control_store_from_url(control_url(control_store)) as cs:
        plan = _run(lambda: change_plan(cs, Journal(cs), geo, begin, actor=f"regionctl:{_user()}",
                                        action=Action.ROLLOUT_START, now=time.time(),
                                        reason=lambda p: f"roll out {p.version} in {geo} over {','.join(s.name for s in p.stages)}"))
    out.print(f"[green]rollout {plan.id}[/green]: {version} replaces {baseline} in {geo}, stages "
              f"{', '.join(s.name for s in plan.stages)}, at least {plan.hold_s:.0f} s each; "
              f"the controller leader drives it (`regionctl rollout status --geo {geo}`)")


def status_doc(cs: Any, store: str, geo: str) -> dict[str, Any]:
    plan, _ = read_plan(cs, geo)
    serving = parse_serving_plan(open_geo_store(store, geo).serving_plan())
    return {"geo": geo, "rollout": plan.to_dict() if plan else None, "gate": read_gate(cs, geo),
            "serving_plan": json.loads(serving.to_json())}


@rollout_app.command("status")
def status_cmd(geo: Optional[str] = GEO, store: str = STORE, control_store: Optional[str] = CONTROL,
               topology: Optional[Path] = TOPOLOGY, as_json: bool = typer.Option(False, "--json")) -> None:
    """Each geography's newest rollout, its stage, the newest gate evaluation and the evidence."""
    geos = [geo] if geo else sorted(_topology(topology).geographies)
    with control_store_from_url(control_url(control_store)) as cs:
        docs = [_run(lambda g=g: status_doc(cs, store, g)) for g in geos]
    rolled_back = any(d["rollout"] and d["rollout"]["state"] == "rolled_back" for d in docs)
    if as_json:
        output.print_json(docs if not geo else docs[0])
        raise typer.Exit(1 if rolled_back else 0)
    for doc in docs:
        r = doc["rollout"]
        if r is None:
            out.print(f"{doc['geo']}: no rollout")
            continue
        out.print(f"[bold]{doc['geo']}[/bold] rollout {r['id']}: {r['version']} (replacing {r['baseline']}) "
                  f"[{'green' if r['state'] in ('running', 'completed') else 'red'}]{r['state']}[/], "
                  f"stage {r['stage']} of {','.join(r['stages'])}; {r['reason']}")
        plan = doc["serving_plan"]
        out.print(f"  cells follow serving plan r{plan['revision']}: candidate {plan['candidate']}, "
                  f"canary {plan['canary_percent']}%, shadow {plan['shadow_percent']}%")
        rows = ([("now", doc["gate"])] if doc["gate"] and r["state"] == "running" else []) + \
               [(f"ended {e['stage']}", e) for e in r["evidence"]]
        for label, gate in rows:
            table = Table(title=f"{label}: {gate.get('verdict')}")
            for col in ("gate", "ok", "value", "limit", "why"):
                table.add_column(col)
            for c in gate.get("checks", []):
                ok = {True: "[green]pass[/green]", False: "[red]FAIL[/red]", None: "[yellow]wait[/yellow]"}[c.get("ok")]
                table.add_row(c["name"], ok, str(c.get("value")), str(c.get("limit")), str(c.get("why", "")))
            out.print(table)
    raise typer.Exit(1 if rolled_back else 0)


@rollout_app.command("abort")
def abort_cmd(geo: Optional[str] = GEO, reason: str = typer.Option(..., "--reason"), store: str = STORE,
              control_store: Optional[str] = CONTROL, topology: Optional[Path] = TOPOLOGY) -> None:
    """Stop the running rollout of a geography; its cells drop the candidate at their next poll."""
    if not reason.strip():
        refuse("--reason", "say why the rollout is aborted")
    with control_store_from_url(control_url(control_store)) as cs:
        if geo is None:
            running = [g for g in sorted(_topology(topology).geographies) if (p := read_plan(cs, g)[0]) and p.running]
            if len(running) != 1:
                refuse("--geo", f"running rollouts in {running or 'no geography'}; name one")
            geo = running[0]
        plan = _run(lambda: change_plan(cs, Journal(cs), geo, lambda p: abort(_must(p, geo), now=time.time(), reason=reason),
                                        actor=f"regionctl:{_user()}", action=Action.ROLLOUT_ABORT, now=time.time(),
                                        reason=lambda p: reason))
    out.print(f"[yellow]aborted[/yellow] {plan.id}: {plan.baseline} stays the serving bundle in {geo}")


def refuse(field: str, message: str) -> NoReturn:
    """Bad input: the one error line and exit status 2 (regionctl.artifacts_cmds._run)."""
    def fail() -> None:
        raise InputError(field, message)
    _run(fail)
    raise AssertionError("unreachable")


def _must(plan: Any, geo: str) -> Any:
    if plan is None:
        raise InputError("--geo", f"no rollout in {geo}")
    return plan


def register(app: typer.Typer) -> None:
    app.add_typer(rollout_app, name="rollout")
