"""`regionctl controller | status | drain | undrain | steer | drill evacuate`.

`controller` runs one controller process (probing, decide-then-act, leadership, control API).
The others are thin clients of the control API at --api / REGIONCTL_API_URL, else the controller
port of the topology the running stack recorded (regionctl.stack_context); the token comes from
REGIONCTL_TOKEN, else the stack's tokens file. Read commands take --json.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Mapping, Optional

import typer
from rich.table import Table

from contracts.environment import calibration_path, retention_key, topology_path
from failover.auth import TOKEN_ENV, Permission, TokenBook, tokens_path
from regions.tokens import ensure_tokens_file
from failover.control_api import ControlClient, parse_duration
from failover.control_store import ENV_VAR
from regionctl import output
from regionctl.stack_context import controller_url, store_url
from regions.errors import InputError

API_ENV = "REGIONCTL_API_URL"
console = output.console()


def parse_weights(text: str) -> dict[str, int]:
    """'us-east=70,us-west=30' -> {'us-east': 70, 'us-west': 30}."""
    weights: dict[str, int] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        region, sep, value = part.partition("=")
        if not sep or not region.strip() or not value.strip().isdigit():
            raise InputError("--weights", f"{part!r} is not REGION=PERCENT; write e.g. us-east=70,us-west=30")
        weights[region.strip()] = int(value)
    if not weights:
        raise InputError("--weights", "give at least one REGION=PERCENT, e.g. us-east=70,us-west=30")
    return weights


def _client(api: Optional[str], topology: Optional[Path], permission: Permission) -> ControlClient:
    api = controller_url(api, topology)
    token = os.environ.get(TOKEN_ENV)
    if not token:
        path = tokens_path(os.environ)
        token = TokenBook.load(path).token_for(permission)
        if token is None:
            raise InputError("token", f"{path} has no token allowed to {permission.value}; set {TOKEN_ENV}")
    return ControlClient(api, token)


def _percent(value: Any) -> str:
    return "-" if value is None else f"{value:.0%}"


def status_tables(doc: Mapping[str, Any]) -> list[Table]:
    table = doc.get("table") or {}
    weights = {r: w for route in (table.get("geos") or {}).values() if not route.get("anonymous")
               for r, w in route.get("regions", {}).items()}
    leader = doc.get("leader") or {}
    regions = Table(title=f"regions (table v{table.get('version', '-')}, fail-static {doc.get('fail_static')}, "
                          f"leader {leader.get('holder')}, asked {doc.get('controller')})")
    for col in ("region", "geo", "state", "weight %", "tier mix", "p99 ms", "errors", "qps", "bundle", "reason"):
        regions.add_column(col, overflow="fold")
    for name, r in sorted((doc.get("regions") or {}).items()):
        probe = r.get("last_probe") or {}
        mix = ", ".join(f"{t} {v:.0%}" for t, v in (r.get("tier_mix") or {}).items() if v) or "-"
        regions.add_row(name, r.get("geography", ""), r.get("state", ""), str(weights.get(name, "-")), mix,
                        f"{probe.get('p99_ms', 0):.0f}" if probe else "-", _percent(probe.get("error_rate")),
                        "-" if r.get("qps") is None else f"{r['qps']:.1f}", str(r.get("bundle_version") or "-"),
                        r.get("reason", ""))
    out = [regions]
    store = doc.get("store")
    if store and not store.get("reachable", True):  # say plainly that nothing is being written
        down = Table(title="[red]control store unreachable: this controller writes nothing[/red]")
        for col in ("writing", "table shown", "error"):
            down.add_column(col, overflow="fold")
        down.add_row("no", f"v{table.get('version', '-')} (last seen by this controller)", store.get("error", ""))
        out.append(down)
    if doc.get("replication"):
        lag = Table(title="replication lag")
        for col in ("from", "to", "lag s", "lag events", "reported by"):
            lag.add_column(col)
        for item in doc["replication"]:
            lag.add_row(item["source"], item["destination"], f"{item['lag_s']:.2f}", str(item["lag_events"]),
                        item["reported_by"])
        out.append(lag)
    overrides = doc.get("overrides") or {}
    drains = doc.get("drains") or [{"region": r, "actor": "unknown", "expires_in_s": None, **d}
                                   for r, d in (overrides.get("drains") or {}).items()]
    if drains or overrides.get("steer"):
        over = Table(title="operator overrides")
        for col in ("kind", "subject", "detail", "by", "expires", "in", "reason"):
            over.add_column(col, overflow="fold")
        for d in drains:
            over.add_row("drain", d["region"], "forced" if d.get("forced") else "", d.get("actor", "unknown"),
                         output.when(d.get("expires_at")), output.in_words(d.get("expires_in_s")), d.get("reason", ""))
        for geo, s in overrides.get("steer", {}).items():
            over.add_row("steer", geo, str(s.get("weights")), "", output.when(s.get("expires_at")), "", s.get("reason", ""))
        out.append(over)
    if doc.get("failback_stages"):
        back = Table(title=f"failback (stage holds {', '.join(f'{h:g} s' for h in doc.get('failback_holds_s', []))}; "
                           "REGIONCTL_CONTROLLER_FAILBACK_HOLD_S)")
        for col in ("region", "stage", "share %", "since", "next stage in"):
            back.add_column(col)
        for f in doc["failback_stages"]:
            back.add_row(f["region"], f"{f['stage']} of {f['of']}", str(f["percent"]), output.when(f["since"]),
                         "last stage" if f["next_stage_in_s"] is None else output.in_words(f["next_stage_in_s"]))
        out.append(back)
    if doc.get("drills"):
        drills = Table(title="drills in progress")
        for col in ("id", "region", "by", "started", "stage", "message"):
            drills.add_column(col, overflow="fold")
        for d in doc["drills"]:
            drills.add_row(d["id"], d["region"], d.get("actor", ""), output.when(d.get("started_at")), d["stage"],
                           d.get("message", ""))
        out.append(drills)
    return out


def plan_tables(plan: Mapping[str, Any]) -> list[Table]:
    checks = Table(title=f"pre-checks for evacuating {plan['region']} ({'all pass' if plan['ok'] else 'FAILING'})")
    for col in ("check", "verdict", "message"):
        checks.add_column(col, overflow="fold")
    for c in plan["checks"]:
        checks.add_row(c["name"], "[green]pass[/green]" if c["passed"] else "[red]FAIL[/red]", c["message"])
    steps = Table(title="steps")
    for col in ("#", "step", "share %", "weights", "hold s", "gates", "what"):
        steps.add_column(col, overflow="fold")
    for i, s in enumerate(plan["steps"], start=1):
        steps.add_row(str(i), s["kind"], str(s["share_percent"]), str(s["weights"]), f"{s['hold_s']:g}",
                      ", ".join(s["gates"]), s["description"])
    return [checks, steps]


def plan_duration_note(plan: Mapping[str, Any]) -> str:
    """Said before a drill starts: how long its holds take, and where each hold comes from."""
    drill_s = sum(s["hold_s"] for s in plan["steps"] if s["kind"] != "failback")
    failback = [s["hold_s"] for s in plan["steps"] if s["kind"] == "failback"]
    return (f"holds: {drill_s:g} s for the drill stages (--hold, else REGIONCTL_CONTROLLER_DRILL_HOLD_S), then "
            f"{sum(failback):g} s of failback holds ({' + '.join(f'{h:g}' for h in failback)} s; a setting: "
            f"REGIONCTL_CONTROLLER_FAILBACK_HOLD_S); at least {drill_s + sum(failback):g} s in all")


_API = typer.Option(None, "--api", envvar=API_ENV, help="Control API URL (default: the topology's controller_port).")
_TOPO = typer.Option(None, "--topology", help="topology.toml (default: REGIONCTL_TOPOLOGY or the repo's).")


def _attach_rollouts(ctl: Any, topo: Any, artifacts_url: Optional[str]) -> Any:
    """The leader's rollout driver: serving plans into each geography's artifact store, online quality
    from the geography's cells, promotion verified with serving's checks and the residency check."""
    from failover.online_quality import CellQuality
    from failover.rollout_driver import RolloutDriver
    from regions import stack
    from replication.geo_artifacts import open_geo_store
    from replication.promotion import promote_verified
    from serving.bundle_checks import SEMANTIC_CHECKS
    from serving.bundle_residency import residency_check
    from serving.features import SCHEMA_VERSION

    url = artifacts_url or stack.stack_urls(stack.default_state_dir()).artifacts
    stores: dict[str, Any] = {}

    def store_of(geo: str) -> Any:
        if geo not in stores:
            stores[geo] = open_geo_store(url, geo, topology=topo)
        return stores[geo]

    def promote(geo: str, version: str) -> Any:
        return promote_verified(store_of(geo), version, supported_schema_versions={SCHEMA_VERSION},
                                semantic_checks=(*SEMANTIC_CHECKS, residency_check(topo, geo)))

    quality = CellQuality(topo)
    ctl.rollouts = RolloutDriver(topology=topo, journal=ctl.journal, artifacts=store_of, quality=quality.by_version,
                                 promote=promote, actor=ctl.actor)
    return quality


def register(app: typer.Typer) -> None:
    @app.command("controller")
    def controller(
        ident: str = typer.Option(..., "--id", help="This controller's id, unique among controllers."),
        store: Optional[str] = typer.Option(None, "--store", envvar=ENV_VAR,
                                            help="Control store URL (default: the stack's, <state dir>/control.db)."),
        api_port: int = typer.Option(0, "--api-port", min=0, max=65535, help="Control API port (0: a free port)."),
        topology: Optional[Path] = _TOPO,
        tokens: Optional[Path] = typer.Option(None, "--tokens", help="Tokens file (default: REGIONCTL_TOKENS_FILE "
                                                                     "or <state dir>/tokens.json, created if missing)."),
        lease_ttl: float = typer.Option(3.0, "--lease-ttl", min=0.1, help="Leader lease TTL in seconds."),
        edge_url: Optional[str] = typer.Option(None, "--edge", help="Edge URL, to time drills until the edge "
                                                                    "uses a table (default: the topology's edge)."),
        artifacts: Optional[str] = typer.Option(None, "--artifacts", envvar="REGIONCTL_ARTIFACTS",
                                                help="Artifact store whose geography stores get the serving plans the "
                                                     "leader publishes for rollouts and experiments (default: the stack's)."),
    ) -> None:
        """Run a controller: probe cells, decide, and (as the leader) write the routing table."""
        from failover.control_api import gamedays_dir, reports_dir, serve
        from failover.control_stores import store_from_url
        from failover.controller import Controller
        from failover.drill_runner import DrillRunner
        from failover.probing import Prober
        from failover.settings import settings_from_env
        from regions.processes import free_port
        from regions.topology import load_topology

        topo = load_topology(topology_path(os.environ, topology))
        settings = settings_from_env(os.environ)
        path = tokens_path(os.environ, tokens)
        ensure_tokens_file(path)
        book = TokenBook.load(path)
        port = api_port or free_port()
        host = topo.settings.host
        control = store_from_url(store_url(store))
        prober = Prober(topology=topo, timeout_s=settings.probe_timeout_s)
        from capacity.calibration import load_calibration

        from failover.dns_publish import DnsPublisher, dns_settings_from_env

        dns_settings = dns_settings_from_env(os.environ, topo)
        ctl = Controller(topology=topo, store=control, holder=ident, prober=prober.probe_all, settings=settings,
                         api_url=f"http://{host}:{port}", lease_ttl_s=lease_ttl,
                         calibration=load_calibration(calibration_path(os.environ)),
                         dns=DnsPublisher(dns_settings, topo) if dns_settings else None)
        quality = _attach_rollouts(ctl, topo, artifacts)
        drills = DrillRunner(ctl, reports_dir=reports_dir(os.environ),
                             edge_url=edge_url or f"http://{host}:{topo.settings.edge_port}")
        try:
            serve(controller=ctl, tokens=book, drills=drills, host=host, port=port,
                  retention_key=retention_key(os.environ), gamedays=gamedays_dir(os.environ))
        finally:
            prober.close()
            quality.close()
            control.close()

    @app.command("status")
    def status(api: Optional[str] = _API, topology: Optional[Path] = _TOPO,
               as_json: bool = typer.Option(False, "--json", help="Print the control API's status document.")) -> None:
        """Regions, health, weights, tier mix, replication lag, bundles, leader, drains, failback, drills."""
        doc = _client(api, topology, Permission.READ).status()
        if as_json:
            output.print_json(doc)
            return
        for table in status_tables(doc):
            console.print(table)

    @app.command("drain")
    def drain(region: str = typer.Argument(...), reason: str = typer.Option(..., "--reason"),
              force: bool = typer.Option(False, "--force"), ttl: Optional[str] = typer.Option(None, "--ttl"),
              api: Optional[str] = _API, topology: Optional[Path] = _TOPO) -> None:
        """Take a region out of service until undrained or the TTL ends (default 24 h)."""
        parse_duration(ttl)
        _client(api, topology, Permission.DIRECT).drain(region, reason=reason, force=force, ttl=ttl)
        console.print(f"[green]drained[/green] {region}; the leader moves its traffic within a probe interval")

    @app.command("undrain")
    def undrain(region: str = typer.Argument(...), reason: str = typer.Option(..., "--reason"),
                api: Optional[str] = _API, topology: Optional[Path] = _TOPO) -> None:
        """End a drain; the controller fails the region back gradually (10 % -> 50 % -> 100 %)."""
        _client(api, topology, Permission.DIRECT).undrain(region, reason=reason)
        console.print(f"[green]undrained[/green] {region}; failback starts at the next probe round")

    @app.command("steer")
    def steer(geo: str = typer.Option(..., "--geo"), weights: Optional[str] = typer.Option(None, "--weights"),
              ttl: Optional[str] = typer.Option(None, "--ttl"), reason: str = typer.Option(..., "--reason"),
              clear: bool = typer.Option(False, "--clear", help="Remove the geography's steer override."),
              api: Optional[str] = _API, topology: Optional[Path] = _TOPO) -> None:
        """Fix a geography's weights (e.g. --weights us-east=70,us-west=30), or --clear them."""
        client = _client(api, topology, Permission.DIRECT)
        if clear:
            client.clear_steer(geo, reason=reason)
            console.print(f"[green]cleared[/green] the steer override of {geo}")
            return
        if not weights:
            raise InputError("--weights", "give REGION=PERCENT pairs summing to 100, or pass --clear")
        parse_duration(ttl)
        client.steer(geo, parse_weights(weights), reason=reason, ttl=ttl)
        console.print(f"[green]steered[/green] {geo} to {weights}")

    drill_app = typer.Typer(no_args_is_help=True, help="Failover drills.")
    app.add_typer(drill_app, name="drill")

    @drill_app.command("evacuate")
    def evacuate(region: str = typer.Argument(...), dry_run: bool = typer.Option(False, "--dry-run"),
                 hold: Optional[str] = typer.Option(None, "--hold", help="Hold of each drill stage (e.g. 30s)."),
                 reason: Optional[str] = typer.Option(None, "--reason"),
                 as_json: bool = typer.Option(False, "--json", help="Print the plan (and, without --dry-run, the "
                                              "finished drill's document) as JSON."),
                 api: Optional[str] = _API, topology: Optional[Path] = _TOPO) -> None:
        """Evacuate a region in stages, hold, undrain and fail back; report time to evacuate and data at risk.

        Exit 0 when the plan passes (--dry-run) or the drill succeeded; 1 when a pre-check fails or the
        drill failed; 2 when the controller refused it (another drill, a standby, bad input)."""
        parse_duration(hold, field="--hold")
        client = _client(api, topology, Permission.DRILL)
        answer = client.drill(region, dry_run=dry_run, hold=hold, reason=reason or f"drill: evacuate {region}")
        if as_json and dry_run:
            output.print_json(answer)
        elif not as_json:
            for table in plan_tables(answer["plan"]):
                console.print(table)
            console.print(plan_duration_note(answer["plan"]))
        if dry_run:
            if not answer["plan"]["ok"]:
                raise typer.Exit(code=1)
            return
        drill_id, shown = answer["id"], 0
        if not as_json:
            console.print(f"drill {drill_id} started")
        while True:
            doc = client.drill_status(drill_id)
            for event in doc["events"][shown:] if not as_json else ():
                console.print(f"  +{event['elapsed_s']:7.2f} s  {event['step']:<9} {event['message']}")
            shown = len(doc["events"])
            if doc["status"] != "running":
                break
            time.sleep(0.5)
        if as_json:
            output.print_json(doc)
            if doc["status"] != "succeeded":
                raise typer.Exit(code=1)
            return
        m = doc["measurements"]
        console.print(f"drill {doc['status']}" + (f": {doc['error']}" if doc["error"] else ""))
        console.print(f"time to evacuate (table): {m.get('evacuate_table_s')} s; (edge): "
                      f"{m.get('evacuate_edge_s', m.get('edge_note'))}; data at risk: {m.get('data_at_risk')}")
        if doc["status"] != "succeeded":
            raise typer.Exit(code=1)


if __name__ == "__main__":
    import sys

    from regions.errors import ShopNowError

    _app = typer.Typer(no_args_is_help=True, add_completion=False)
    register(_app)
    try:
        _app()
    except ShopNowError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(2)
