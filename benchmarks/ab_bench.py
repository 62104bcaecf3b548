"""A/B test on real cells with reacting users: does the better bundle measurably win?

    .venv/bin/python bench/bench_ab.py [--size demo|tiny] [--weaker inverted|shuffled|identical]
                                       [--rate 15] [--duration 30] [--look-every 5] [--json]

What it does (loopback only; everything it starts is stopped at the end):
  1. the demo bundle of the us geography (var/bench/bundle-<size>-seed7-us, trained once by the
     serving benchmark's `ensure_bundle`, or the bundle a test hands in) and its deliberately
     weaker copy (serving.weak_bundle: `inverted` ranks the same candidates backwards);
  2. two regions of one geography, each with its redis-server and a real cell (`regionctl cell`):
     arm A's cell serves the bundle, arm B's the weaker one; the users' states replayed from the
     same synthetic data are written to both Redis;
  3. the us users with an embedding split in two by a hash of their id (an A/B split by user);
     each arm's users get open-loop homepage load on their cell (`rate` req/s per arm) and REACT to
     what they are shown (chaos.reactions, probabilities from serving.marketplace's latent
     preferences), their clicks, carts and purchases POSTed to the same cell's /v1/events;
  4. the cells record what they showed (log:impressions); every `look_every` s of the run, the
     per-variant totals up to that time (GET /v1/online-metrics of each cell, outcomes up to the
     same time, merged) are compared (online_metrics.significance, alpha / number of looks);
  5. prints per arm impressions, users, CTR, add-to-cart, conversion and revenue per impression,
     the p-value of each look, the verdict, and the time to significance (the first look whose
     verdict is `winner`). `--weaker identical` is the A/A control: no look may name a winner.
Prints figures; asserts nothing (tests/online_metrics/test_ab_stack.py asserts the verdicts).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import httpx

from benchmarks.redis_stack import start_stack, topology_toml
from chaos.load import LoadMix, LoadSpec, run_load_async
from contracts import bucketing
from chaos.reactions import ReactionTable
from online_metrics.attribution import VariantTotals, merge_totals
from online_metrics.significance import DecisionPolicy, compare
from regions.errors import InputError, TemporaryError
from regions.processes import ManagedProcess, spawn, wait_until
from regions.topology import REPO_ROOT

ARM_REGIONS = ("us-east", "us-west")
"""Arm A's cell, arm B's cell: two regions of the us geography."""
GEOGRAPHIES = {"us": 0.6, "eu": 0.4}
RANKER_ENV = {"REGIONCTL_ADMISSION": "off"}
"""The cells of an A/B run rank every request they can: without admission control, which on a
loaded machine sends most requests past the full tier (the rankers) to the segment lists, where
both arms show the same thing. Shedding under overload is the overload game days' subject."""
"""The shares `regionctl train` draws the marketplace with: the same users as the bundle's."""


@dataclass(frozen=True)
class AbSettings:
    size: str = "demo"
    """The marketplace the bundle was trained on (its users, states and latent preferences)."""
    seed: int = 7
    """`regionctl train`'s default seed."""
    weaker: str = "inverted"
    """serving.weak_bundle mode of arm B; `identical` is the A/A control."""
    rate: float = 15.0
    """Homepage requests per second per arm: about 900 impressions per arm a minute."""
    duration_s: float = 30.0
    look_every_s: float = 5.0
    """A look at the running test every 5 s; each look tests at alpha / (duration / look_every)."""
    users: int = 400
    """Users of the geography with an embedding, at most (split in two arms)."""
    alpha: float = 0.05
    min_impressions: int = 100
    min_users: int = 30
    min_duration_s: float = 10.0
    """Short on purpose (a benchmark of minutes): a production experiment keeps DecisionPolicy's defaults."""

    def __post_init__(self) -> None:
        if not 0 < self.look_every_s <= self.duration_s:
            raise InputError("look_every", f"must be in (0, duration], got {self.look_every_s}")

    @property
    def looks(self) -> int:
        return max(int(self.duration_s // self.look_every_s), 1)

    def policy(self) -> DecisionPolicy:
        return DecisionPolicy(alpha=self.alpha, min_impressions=self.min_impressions, min_users=self.min_users,
                              min_duration_s=self.min_duration_s, looks=self.looks)


def arm_of(user_id: str) -> int:
    """0 (arm A) or 1 (arm B): the product's consistent bucketing (contracts.bucketing), salted by
    the bench's own experiment id, so a user always sees the same arm."""
    return 0 if bucketing.bucket(user_id, "ab-bench") < bucketing.BUCKETS // 2 else 1


@dataclass
class AbStack:
    cells: dict[str, ManagedProcess]
    urls: dict[str, str]
    versions: dict[str, str]
    stores: dict[str, Any]
    users: dict[str, list[str]]
    """Region -> the users of that arm."""
    reactions: ReactionTable
    restart: Callable[[str, Path], str] | None = None
    notes: list[str] = field(default_factory=list)


def _publish(store: Any, bundle_dir: Path) -> str:
    from replication.promotion import promote_verified
    from serving.bundle_checks import SEMANTIC_CHECKS
    from serving.features import SCHEMA_VERSION

    version = store.publish(bundle_dir)
    promote_verified(store, version, supported_schema_versions={SCHEMA_VERSION}, semantic_checks=SEMANTIC_CHECKS)
    return version


def _wait_serving(url: str, version: str, cell: ManagedProcess, *, timeout: float = 180.0) -> None:
    def ready() -> bool:
        if not cell.alive():
            return True
        try:
            return httpx.get(f"{url}/readyz", timeout=1.0).json().get("bundle_version") == version
        except (httpx.HTTPError, ValueError):
            return False

    wait_until(ready, timeout=timeout, interval=0.2, what=f"cell {url} serving {version}")
    if not cell.alive():
        raise TemporaryError(f"the cell at {url} exited:\n{cell.log_tail()}")


def reacting_users(settings: AbSettings, bundle_dir: Path) -> tuple[dict[str, Any], ReactionTable]:
    """The us users of the bundle with an embedding (at most settings.users), their states replayed
    from the synthetic data ({user: UserState}), and how they react (chaos.reactions.ReactionTable)."""
    from benchmarks.serving_bench import ServingBenchSettings, bench_users
    from serving import marketplace

    states = bench_users(replace(ServingBenchSettings(), size=settings.size, seed=settings.seed, users=settings.users,
                                 rss_sizes=()), bundle_dir, GEOGRAPHIES, "us")
    dataset = marketplace.generate_named(settings.size, seed=settings.seed, geographies=GEOGRAPHIES)
    return states, ReactionTable(**marketplace.reaction_arrays(dataset, sorted(states)))


def seed_user_states(topology: Any, regions: Any, states: dict[str, Any]) -> None:
    """Write the users' states into each region's Redis (what the feature updaters would have built)."""
    from serving.feature_store import FeatureStore, FeatureStoreSettings

    for region in regions:
        store = FeatureStore.from_url(topology.region(region).redis_url(), region=region, topology=topology,
                                      settings=FeatureStoreSettings(connect_timeout_s=2.0, read_timeout_s=5.0))  # seeding, not serving
        try:
            for user_id, state in states.items():
                store.put_user_state(user_id, state)
        finally:
            store.close()


@contextmanager
def ab_stack(bundle_a: Path, bundle_b: Path, *, settings: AbSettings, work: Path,
             log: Callable[[str], None] = lambda _m: None) -> Iterator[AbStack]:
    """Two cells of one geography, arm A serving `bundle_a`, arm B `bundle_b` (see the module docstring)."""
    from replication.geo_artifacts import open_geo_store

    started: list[ManagedProcess] = []
    try:
        stack = start_stack(work, {r: "us" for r in ARM_REGIONS}, started)
        topo_file = work / "topology.toml"
        topo_file.write_text(topology_toml(stack.topology))
        states, reactions = reacting_users(settings, bundle_a)
        seed_user_states(stack.topology, ARM_REGIONS, states)
        users = {region: sorted(u for u in states if arm_of(u) == n) for n, region in enumerate(ARM_REGIONS)}
        cells: dict[str, ManagedProcess] = {}
        urls: dict[str, str] = {}
        versions: dict[str, str] = {}
        stores: dict[str, Any] = {}
        for region, bundle in zip(ARM_REGIONS, (bundle_a, bundle_b)):
            artifacts = work / f"artifacts-{region}"
            stores[region] = open_geo_store(artifacts.as_uri(), "us")
            versions[region] = _publish(stores[region], bundle)
            argv = [sys.executable, "-m", "regionctl.main", "cell", "--region", region, "--artifacts", artifacts.as_uri(),
                    "--state-dir", str(work / f"state-{region}")]
            cells[region] = spawn(f"cell-{region}", argv, log_dir=work / "logs", cwd=REPO_ROOT,
                                  env={"REGIONCTL_TOPOLOGY": str(topo_file), **RANKER_ENV})
            started.append(cells[region])
            urls[region] = f"http://127.0.0.1:{stack.topology.region(region).http_port}"
        for region in ARM_REGIONS:
            _wait_serving(urls[region], versions[region], cells[region])
        log(f"cells up: {', '.join(f'{r} serves {versions[r]} to {len(users[r])} users' for r in ARM_REGIONS)}")
        ab = AbStack(cells=cells, urls=urls, versions=versions, stores=stores, users=users, reactions=reactions)

        def promote(region: str, bundle: Path) -> str:
            """Serve another bundle on `region`'s cell (promoted in its store; the cell's watcher swaps)."""
            version = _publish(ab.stores[region], bundle)
            _wait_serving(ab.urls[region], version, ab.cells[region])
            ab.versions[region] = version
            return version

        ab.restart = promote
        yield ab
    finally:
        for proc in reversed(started):
            proc.stop(timeout=5)


def totals_at(urls: Iterable[str], *, since: float, until: float | None, by: str = "bundle_version",
              experiment: str | None = None) -> dict[str, VariantTotals]:
    """The cells' totals (GET /v1/online-metrics) of the impressions since `since` up to `until`
    (None: all), with the outcomes stored up to `until`: what a look at `until` saw; merged."""
    params: dict[str, Any] = {"since_ts": since, "by": by}
    if until is not None:
        params.update(until_ts=until, outcomes_until_ts=until)
    if experiment:
        params["experiment"] = experiment
    parts = []
    for url in urls:
        body = httpx.get(f"{url}/v1/online-metrics", params=params, timeout=30.0).raise_for_status().json()
        parts.append({k: VariantTotals.from_dict(v) for k, v in body["totals"].items()})
    return merge_totals(parts)


MIN_FULL_SHARE = 0.5
"""Below half of the answers from the full tier (the rankers), an A/B between rankers compares
mostly the same degraded lists (segment, popularity): such a run says little about the rankers."""


def full_tier_share(paths: Iterable[Path]) -> float:
    """The share of a load's answered homepages that the full tier (the ranker) served."""
    from chaos.load import read_records

    pages = [r for p in paths for r in read_records(p) if r["kind"] == "homepage" and r["ok"]]
    return sum(1 for r in pages if r["tier"] == "full") / len(pages) if pages else 0.0


def run_experiment(ab: AbStack, *, settings: AbSettings, work: Path, log: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """Reacting load on both arms for `duration_s`, then the looks; the figures as a dict."""
    specs = [LoadSpec(base_url=ab.urls[region], rate=settings.rate, duration_s=settings.duration_s, users=ab.users[region],
                      items=list(ab.reactions.item_ids[:10]), mix=LoadMix(homepage=1.0, similar=0.0, events=0.0),
                      seed=settings.seed + n, reactions=ab.reactions)
             for n, region in enumerate(ARM_REGIONS)]

    async def both() -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(run_load_async(spec, work / f"load-{n}.jsonl") for n, spec in enumerate(specs))))

    t0 = time.time()
    loads = asyncio.run(both())
    time.sleep(0.5)  # the cells write queued impressions every 50 ms
    full = full_tier_share([work / f"load-{n}.jsonl" for n in range(len(specs))])
    good, weak = (ab.versions[r] for r in ARM_REGIONS)
    policy = settings.policy()
    looks: list[dict[str, Any]] = []
    first_win: float | None = None
    verdict = None
    for k in range(1, settings.looks + 1):
        at = t0 + k * settings.look_every_s
        totals = totals_at(ab.urls.values(), since=t0, until=at)
        a, b = totals.get(good, VariantTotals(good)), totals.get(weak, VariantTotals(weak))
        verdict = compare(a, b, policy=policy, duration_s=at - t0)
        ctr = verdict.test_of("ctr")
        looks.append({"t_s": round(at - t0, 1), "impressions": [a.impressions, b.impressions], "ctr": [a.ctr, b.ctr],
                      "p_value": ctr.p_value, "design_effect": ctr.design_effect, "verdict": verdict.verdict,
                      "winner": verdict.winner})
        if verdict.verdict == "winner" and first_win is None:
            first_win = at - t0
        log(f"look {k} at {at - t0:.0f} s: {a.impressions}/{b.impressions} impressions, CTR {a.ctr:.3f}/{b.ctr:.3f}, "
            f"p {ctr.p_value:.3g} -> {verdict.verdict} {verdict.winner or ''}")
    assert verdict is not None
    everything = totals_at(ab.urls.values(), since=t0, until=None)
    return {"all_impressions": sum(t.impressions for t in everything.values()), "full_tier_share": full,"arms": {"A": {"region": ARM_REGIONS[0], "bundle_version": good}, "B": {"region": ARM_REGIONS[1], "bundle_version": weak,
                                                                                   "weaker": settings.weaker}},
            "load": [{k: v for k, v in s.items() if k in ("sent", "failed", "achieved_rate", "valid", "p99_schedule_lag_ms")}
                     for s in loads],
            "policy": {"alpha": policy.alpha, "looks": policy.looks, "threshold": policy.threshold,
                       "min_impressions": policy.min_impressions, "min_users": policy.min_users,
                       "min_duration_s": policy.min_duration_s},
            "looks": looks, "final": verdict.to_dict(), "any_winner": any(lk["verdict"] == "winner" for lk in looks),
            "time_to_significance_s": first_win, "duration_s": settings.duration_s, "rate_per_arm": settings.rate}


def run_ab(bundle_dir: Path, *, settings: AbSettings, work: Path, log: Callable[[str], None] = lambda _m: None,
           modes: tuple[str, ...] | None = None) -> dict[str, dict[str, Any]]:
    """One experiment per mode (default: settings.weaker) on one pair of cells: arm A serves
    `bundle_dir`, arm B its weaker copy of that mode. Returns {mode: figures}."""
    from serving.weak_bundle import weaken_bundle

    modes = modes or (settings.weaker,)
    weak = {m: work / f"bundle-{m}" for m in modes}
    for m in modes:
        weaken_bundle(bundle_dir, weak[m], mode=m)
    out: dict[str, dict[str, Any]] = {}
    with ab_stack(bundle_dir, weak[modes[0]], settings=settings, work=work, log=log) as ab:
        for n, m in enumerate(modes):
            if n and ab.restart is not None:
                ab.restart(ARM_REGIONS[1], weak[m])
            log(f"experiment {m}: arm A {ab.versions[ARM_REGIONS[0]]} vs arm B {ab.versions[ARM_REGIONS[1]]}")
            out[m] = run_experiment(ab, settings=replace(settings, weaker=m), work=work, log=log)
    return out


def render(results: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for mode, r in results.items():
        final = r["final"]
        a, b = final["a"], final["b"]
        lines.append(f"A/B: {r['arms']['A']['bundle_version']} (A) vs {r['arms']['B']['bundle_version']} (B, {mode}); "
                     f"{r['rate_per_arm']:g} homepages/s per arm for {r['duration_s']:g} s, reacting users")
        lines.append("| arm | impressions | users | CTR | add-to-cart | conversion | revenue / impression |")
        lines.append("| --- | --- | --- | --- | --- | --- | --- |")
        for name, t in (("A", a), ("B", b)):
            lines.append(f"| {name} | {t['impressions']} | {t['users']} | {t['ctr']:.3f} | {t['add_to_cart_rate']:.3f} | "
                         f"{t['conversion_rate']:.3f} | {t['revenue_per_impression']:.2f} |")
        ctr = next(t for t in final["tests"] if t["metric"] == "ctr")
        lines.append(f"looks (every {r['duration_s'] / len(r['looks']):g} s, threshold {r['policy']['threshold']:.3g} = "
                     f"alpha {r['policy']['alpha']:g} / {r['policy']['looks']}): "
                     + ", ".join(f"{lk['t_s']:g}s p={lk['p_value']:.2g} {lk['verdict']}" for lk in r["looks"]))
        lines.append(f"answers from the full tier (the rankers): {r['full_tier_share']:.0%}"
                     + ("" if r["full_tier_share"] >= MIN_FULL_SHARE else " -- too few: the rankers were barely compared"))
        lines.append(f"verdict: {final['verdict']} {final['winner'] or ''}; final CTR p = {ctr['p_value']:.3g} "
                     f"(design effect {ctr['design_effect']:.2f}); time to significance: "
                     f"{'%.0f s' % r['time_to_significance_s'] if r['time_to_significance_s'] is not None else 'never'}")
        lines.append("")
    return lines


def main(argv: list[str] | None = None) -> None:
    from benchmarks.serving_bench import ServingBenchSettings, ensure_bundle

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="demo")
    parser.add_argument("--weaker", default="inverted,identical", help="comma-separated serving.weak_bundle modes, run in turn")
    parser.add_argument("--rate", type=float, default=15.0)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--look-every", type=float, default=5.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from serving.weak_bundle import MODES

    modes = tuple(m.strip() for m in args.weaker.split(",") if m.strip())
    try:
        settings = AbSettings(size=args.size, rate=args.rate, duration_s=args.duration, look_every_s=args.look_every)
        bad = [m for m in modes if m not in MODES]
        if bad or not modes:
            raise InputError("weaker", f"unknown mode {bad[0] if bad else ''!r}; allowed: {', '.join(MODES)}")
    except InputError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    log = (lambda _m: None) if args.json else (lambda m: print(m, file=sys.stderr, flush=True))
    bundle = ensure_bundle(replace(ServingBenchSettings(), size=settings.size, seed=settings.seed, rss_sizes=()), GEOGRAPHIES, log)
    work = Path(tempfile.mkdtemp(prefix="bench-ab-"))
    try:
        results = run_ab(bundle, settings=settings, work=work, log=log, modes=modes)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results, indent=2) if args.json else "\n".join(render(results)))


if __name__ == "__main__":
    main()
