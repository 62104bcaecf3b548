"""Prints what the ladder and the rules cost on this machine (not a test; no assertions).

    .venv/bin/python -m tests.fallback_tiers.bench_ladder
"""
from __future__ import annotations

import platform
import random
import time
from typing import Callable

from fallback_tiers.breaker import CircuitBreaker
from fallback_tiers.deadline import Deadline
from fallback_tiers.ladder import Ladder, TierSpec
from fallback_tiers.tiers import ScoredItem, Tier, TierOutput, TierRequest
from serving.reranking import ItemMeta, RerankRules, ladder_rules, rerank


def per_call_us(fn: Callable[[], object], *, repeat: int) -> tuple[float, float]:
    """Median and p99 of `repeat` calls, in microseconds."""
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e6)
    samples.sort()
    return samples[len(samples) // 2], samples[int(len(samples) * 0.99)]


def main() -> None:
    rng = random.Random(7)
    catalog = {f"i{n}": ItemMeta(category=f"c{rng.randrange(40)}", brand=f"b{rng.randrange(200)}",
                                 stock=rng.choice([0, 1, 5, 20])) for n in range(20_000)}
    ids = list(catalog)
    stock = {i: rng.random() > 0.1 for i in rng.sample(ids, 2_000)}
    rules = RerankRules(pins={ids[3]: 0, ids[9]: 4}, category_boosts={"c1": 1.5}, brand_boosts={"b2": 2.0})
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}")
    print("rerank (count 20, caps 3/category 2/brand, 2 pins, boosts):")
    for n in (100, 500, 2000):
        cands = [ScoredItem(i, rng.random()) for i in rng.sample(ids, n)]
        med, p99 = per_call_us(lambda: rerank(cands[:20], reserve=cands[20:], count=20, catalog=catalog,
                                              stock=stock, rules=rules, exclude={ids[5]}), repeat=2000)
        print(f"  {n:5d} candidates: median {med:8.1f} us   p99 {p99:8.1f} us")

    popularity = TierOutput.from_ids(ids[:1000], count=20)
    ranked = TierOutput.from_ids(rng.sample(ids, 200), count=20)
    post = ladder_rules(catalog=catalog, stock=stock, rules=rules)
    breakers = {"redis": CircuitBreaker("redis"), "ranker": CircuitBreaker("ranker")}

    def failing(request: TierRequest, budget: float) -> TierOutput:
        raise ConnectionError("down")

    def ladder_with(full: Callable[[TierRequest, float], TierOutput]) -> Ladder:
        return Ladder(tiers=[
            TierSpec(Tier.FULL, full, frozenset({"redis", "ranker"})),
            TierSpec(Tier.CACHED, failing, frozenset({"redis"})),
            TierSpec(Tier.SEGMENT, lambda r, b: TierOutput(())),
            TierSpec(Tier.POPULARITY, lambda r, b: popularity),
        ], breakers=breakers, post_process=post)

    request = TierRequest("us-1", 20)
    print("ladder overhead, tiers returning at once (rules included):")
    happy = ladder_with(lambda r, b: ranked)
    med, p99 = per_call_us(lambda: happy.run(request, Deadline.start(0.150)), repeat=3000)
    print(f"  full serves                          : median {med:8.1f} us   p99 {p99:8.1f} us")
    broken = ladder_with(failing)
    med, p99 = per_call_us(lambda: broken.run(request, Deadline.start(0.150)), repeat=3000)
    print(f"  full+cached fail -> popularity       : median {med:8.1f} us   p99 {p99:8.1f} us")
    anon = TierRequest(None, 20)
    med, p99 = per_call_us(lambda: happy.run(anon, Deadline.start(0.150)), repeat=3000)
    print(f"  anonymous -> popularity              : median {med:8.1f} us   p99 {p99:8.1f} us")
    breaker = CircuitBreaker("x")
    med, p99 = per_call_us(breaker.try_acquire, repeat=20000)
    print(f"breaker.try_acquire: median {med:.2f} us   p99 {p99:.2f} us")


if __name__ == "__main__":
    main()
