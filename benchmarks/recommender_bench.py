"""The recommender in process, without any server: ms per homepage request for each tier.

Shows how much of a cell's per-request cost is the recommendation work itself (Redis user state,
candidates, features, predict, rules, ladder) and how much is the HTTP/gRPC server around it
(compare with `make bench`). Starts its own redis-server on a free loopback port; uses the demo
bundle that `make bench` trains (var/bench/bundle-demo-seed7), or --bundle DIR. Prints figures only.

    .venv/bin/python benchmarks/recommender_bench.py [--bundle DIR] [--users 200] [--rounds 3]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


from fallback_tiers.tiers import Tier
from regions.processes import free_port, start_redis
from regions.topology import REPO_ROOT, load_topology
from serving.bundle import LoadedBundle
from serving.feature_store import FeatureStore, item_features_of
from serving.recommender import Recommender, Serving


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, default=REPO_ROOT / "var" / "bench" / "bundle-demo-seed7")
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if not (args.bundle / "manifest.json").exists():
        sys.exit(f"no bundle at {args.bundle}: run `make bench` first (it trains one) or pass --bundle DIR")
    topology = load_topology()
    region = next(iter(topology.regions))
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        redis_proc = start_redis(port=port, data_dir=Path(tmp), name="bench-recommender-redis")
        try:
            store = FeatureStore.from_url(f"redis://127.0.0.1:{port}/0", region=region, topology=topology)
            bundle = LoadedBundle.load(args.bundle)
            store.put_item_features(item_features_of(bundle.items, updated_at=time.time()))
            serving = Serving.of(bundle)
            rec = Recommender(region=region, topology=topology, store=store, serving=lambda: serving)
            geo = topology.region(region).geography
            users = [u for u in bundle.user_ids if u.startswith(f"{geo}-")][: args.users]
            for tier in (Tier.FULL, Tier.SEGMENT, Tier.POPULARITY):
                for user in users:  # warm-up: caches, first-call costs
                    rec.homepage(user_id=user, count=8, max_tier=tier)
                started = time.perf_counter()
                n = 0
                for _ in range(args.rounds):
                    for user in users:
                        rec.homepage(user_id=user, count=8, max_tier=tier)
                        n += 1
                print(f"{tier.value:<10} {(time.perf_counter() - started) / n * 1000:7.3f} ms per request "
                      f"(in process, {n} requests, {len(users)} users)")
        finally:
            redis_proc.kill()


if __name__ == "__main__":
    main()
