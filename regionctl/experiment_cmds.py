"""`regionctl experiments create | list | show | stop`: A/B experiments of one geography.

    create ID --geo G --arm control=50 --arm weak=50 [--arm-bundle weak=VERSION]
           [--arm-rules 'weak={"max_per_category": 1}'] [--arm-candidates weak=40]
           [--min-impressions N] [--min-duration 1h] [--alpha 0.05] [--looks 1] [--primary ctr]
        The first arm is the control. Arm bundles must be published in the geography's store and
        verify; rules are checked by serving.reranking.rules_from_mapping. Written to the control
        store (experiments/<geo>/<id>) and journaled; the leader puts it into the geography's
        serving plan and every cell of the geography buckets users by user id + experiment id.
    list [--geo G] [--json]            the experiments and their status
    show ID --geo G [--json]           arms, per-arm CTR / add-to-cart / conversion / revenue per
                                       impression (from the geography's cells: totals only) and the
                                       chi-squared verdict (online_metrics.significance); exit 0
    stop ID --geo G --reason R         the cells stop bucketing at their next poll
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from failover.control_stores import store_from_url as control_store_from_url
from failover.experiments import arm_key, new_experiment, stop, verdict_of
from failover.journal import Action, Journal
from failover.rollout_store import list_experiments, put_experiment
from regionctl import output
from regionctl.artifacts_cmds import DEFAULT_STORE, _run, _topology, _user
from regionctl.rollout_cmds import control_url, refuse
from replication.geo_artifacts import open_geo_store

experiments_app = typer.Typer(no_args_is_help=True, help="A/B experiments: arms, bucketing, per-arm metrics, significance.")
out = Console()

GEO = typer.Option(..., "--geo", help="The geography the experiment runs in (its users only).")
CONTROL = typer.Option(None, "--control-store", envvar="REGIONCTL_CONTROL_STORE", help="Control store URL (default: the local stack's).")
TOPOLOGY = typer.Option(None, "--topology", help="topology.toml (default REGIONCTL_TOPOLOGY or the repo's).")
STORE = typer.Option(DEFAULT_STORE, "--store", envvar="REGIONCTL_ARTIFACTS", help="Artifact store (file:// or s3://).")


def _pairs(values: list[str], option: str) -> dict[str, str]:
    out_: dict[str, str] = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name:
            refuse(option, f"{value!r} is not NAME=VALUE")
        out_[name] = rest
    return out_


def arms_of(arm: list[str], bundles: list[str], rules: list[str], candidates: list[str]) -> list[dict[str, Any]]:
    weights = _pairs(arm, "--arm")
    extra = {"--arm-bundle": _pairs(bundles, "--arm-bundle"), "--arm-rules": _pairs(rules, "--arm-rules"),
             "--arm-candidates": _pairs(candidates, "--arm-candidates")}
    for option, values in extra.items():
        for name in values:
            if name not in weights:
                refuse(option, f"arm {name!r} is not declared with --arm {name}=WEIGHT")
    arms = []
    for name, weight in weights.items():
        try:
            raw: dict[str, Any] = {"name": name, "weight": float(weight)}
            if name in extra["--arm-bundle"]:
                raw["bundle_version"] = extra["--arm-bundle"][name]
            if name in extra["--arm-rules"]:
                raw["rules"] = json.loads(extra["--arm-rules"][name])
            if name in extra["--arm-candidates"]:
                raw["candidate_count"] = int(extra["--arm-candidates"][name])
        except ValueError as exc:
            refuse(f"arm {name}", f"{exc}")
        arms.append(raw)
    return arms


@experiments_app.command("create")
def create_cmd(
    ident: str = typer.Argument(..., help="Experiment id (letters, digits, - _ . :)."),
    geo: str = GEO,
    arm: list[str] = typer.Option(..., "--arm", help="NAME=WEIGHT; the first is the control."),
    arm_bundle: list[str] = typer.Option([], "--arm-bundle", help="NAME=VERSION: the arm ranks with this bundle."),
    arm_rules: list[str] = typer.Option([], "--arm-rules", help='NAME=JSON: re-rank rules, e.g. weak={"max_per_brand": 1}.'),
    arm_candidates: list[str] = typer.Option([], "--arm-candidates", help="NAME=N: ANN candidates retrieved."),
    min_impressions: int = typer.Option(1000, "--min-impressions", min=1),
    min_users: int = typer.Option(100, "--min-users", min=1, help="Distinct users per arm before a winner."),
    min_duration: str = typer.Option("1h", "--min-duration"),
    alpha: float = typer.Option(0.05, "--alpha"),
    looks: int = typer.Option(1, "--looks", min=1),
    primary: str = typer.Option("ctr", "--primary"),
    store: str = STORE, control_store: Optional[str] = CONTROL, topology: Optional[Path] = TOPOLOGY,
) -> None:
    """Create and start an experiment in a geography."""
    from failover.control_api import parse_duration
    from serving.reranking import rules_from_mapping

    arms = arms_of(arm, arm_bundle, arm_rules, arm_candidates)
    topo = _topology(topology)
    _run(lambda: topo.geography(geo))
    for a in arms:
        if "rules" in a:
            _run(lambda a=a: rules_from_mapping(a["rules"]))
    published = {i.version for i in _run(lambda: open_geo_store(store, geo).list())}
    for a in arms:
        if a.get("bundle_version") and a["bundle_version"] not in published:
            refuse(f"--arm-bundle {a['name']}", f"{a['bundle_version']} is not published in {geo}'s store")
    duration = _run(lambda: parse_duration(min_duration, field="--min-duration"))
    policy = {"min_impressions": min_impressions, "min_users": min_users, "min_duration_s": duration, "alpha": alpha, "looks": looks, "primary": primary}
    actor = f"regionctl:{_user()}"
    with control_store_from_url(control_url(control_store)) as cs:
        doc = _run(lambda: new_experiment(geo=geo, raw={"id": ident, "arms": arms}, policy=policy, now=time.time(),
                                          actor=actor, existing=list_experiments(cs, geo)))
        _run(lambda: put_experiment(cs, Journal(cs), doc, create=True, actor=actor, action=Action.EXPERIMENT_CREATE,
                                    now=time.time(), reason=f"start experiment {ident} in {geo}"))
    out.print(f"[green]experiment {ident}[/green] created in {geo}: arms "
              f"{', '.join(a['name'] + '=' + str(a['weight']) for a in arms)} (control: {arms[0]['name']}); "
              "the controller leader puts it in the geography's serving plan")


@experiments_app.command("list")
def list_cmd(geo: Optional[str] = typer.Option(None, "--geo"), control_store: Optional[str] = CONTROL,
             topology: Optional[Path] = TOPOLOGY, as_json: bool = typer.Option(False, "--json")) -> None:
    geos = [geo] if geo else sorted(_topology(topology).geographies)
    with control_store_from_url(control_url(control_store)) as cs:
        docs = [d for g in geos for d in _run(lambda g=g: list_experiments(cs, g))]
    if as_json:
        output.print_json([d.to_dict() for d in docs])
        return
    table = Table(title="experiments")
    for col in ("geo", "id", "status", "arms", "created", "policy"):
        table.add_column(col)
    for d in docs:
        table.add_row(d.geo, d.id, d.status, ", ".join(f"{a.name}={a.weight:g}" for a in d.experiment.arms),
                      output.when(d.created_at), f"{d.policy.primary}, >= {d.policy.min_impressions} impressions, "
                      f">= {d.policy.min_duration_s:.0f} s, alpha {d.policy.alpha}")
    out.print(table)


def show_doc(doc: Any, totals: dict[str, Any] | None, *, now: float) -> dict[str, Any]:
    figures = {}
    for a in doc.experiment.arms:
        t = (totals or {}).get(arm_key(doc, a.name))
        figures[a.name] = None if t is None else {
            "impressions": t.impressions, "ctr": t.ctr, "add_to_cart": t.add_to_cart_rate,
            "conversion": t.conversion_rate, "revenue_per_impression": t.revenue_per_impression}
    verdict = verdict_of(doc, totals or {}, now=now)
    return {"experiment": doc.to_dict(), "arms": figures, "verdict": verdict.to_dict()}


@experiments_app.command("show")
def show_cmd(ident: str = typer.Argument(...), geo: str = GEO, control_store: Optional[str] = CONTROL,
             topology: Optional[Path] = TOPOLOGY, as_json: bool = typer.Option(False, "--json")) -> None:
    """An experiment, its per-arm figures from the geography's cells, and the verdict."""
    from failover.online_quality import CellQuality

    topo = _topology(topology)
    with control_store_from_url(control_url(control_store)) as cs:
        doc = next((d for d in _run(lambda: list_experiments(cs, geo)) if d.id == ident), None)
    if doc is None:
        refuse("id", f"no experiment {ident} in {geo} (`regionctl experiments list --geo {geo}`)")
    quality = CellQuality(topo)
    try:
        totals = quality.totals(geo, since_ts=doc.created_at, by="arm", experiment=doc.id)
    finally:
        quality.close()
    doc_out = show_doc(doc, totals, now=time.time())
    if quality.errors:
        doc_out["unreachable"] = dict(quality.errors)
    if as_json:
        output.print_json(doc_out)
        return
    out.print(f"[bold]{doc.id}[/bold] in {geo}: {doc.status}; control {doc.experiment.arms[0].name}")
    table = Table(title="per arm (per impression)")
    for col in ("arm", "bundle", "rules", "candidates", "impressions", "CTR", "add-to-cart", "conversion", "revenue"):
        table.add_column(col)
    for a in doc.experiment.arms:
        f = doc_out["arms"][a.name]
        nums = ("-",) * 5 if f is None else (str(f["impressions"]), f"{f['ctr']:.4f}", f"{f['add_to_cart']:.4f}",
                                             f"{f['conversion']:.4f}", f"{f['revenue_per_impression']:.3f}")
        table.add_row(a.name, a.bundle_version or "(serving)", json.dumps(dict(a.rules)) if a.rules else "-",
                      str(a.candidate_count or "-"), *nums)
    out.print(table)
    v = doc_out["verdict"]
    out.print(f"verdict: [bold]{v['verdict']}[/bold]" + (f", winner {v['winner']}" if v.get("winner") else ""))
    for reason in v.get("reasons", []):
        out.print(f"  {reason}")
    for region, error in doc_out.get("unreachable", {}).items():
        out.print(f"[yellow]{region} did not answer[/yellow]: {error}")


@experiments_app.command("stop")
def stop_cmd(ident: str = typer.Argument(...), geo: str = GEO, reason: str = typer.Option(..., "--reason"),
             control_store: Optional[str] = CONTROL) -> None:
    if not reason.strip():
        refuse("--reason", "say why the experiment stops")
    actor = f"regionctl:{_user()}"
    with control_store_from_url(control_url(control_store)) as cs:
        doc = next((d for d in _run(lambda: list_experiments(cs, geo)) if d.id == ident), None)
        if doc is None:
            refuse("id", f"no experiment {ident} in {geo}")
        stopped = _run(lambda: stop(doc, now=time.time(), reason=reason))
        _run(lambda: put_experiment(cs, Journal(cs), stopped, create=False, actor=actor, action=Action.EXPERIMENT_STOP,
                                    now=time.time(), reason=reason))
    out.print(f"[yellow]stopped[/yellow] experiment {ident} in {geo}; the cells stop bucketing at their next poll")


def register(app: typer.Typer) -> None:
    app.add_typer(experiments_app, name="experiments")


__all__ = ["arms_of", "show_doc"]
