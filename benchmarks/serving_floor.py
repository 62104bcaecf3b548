"""The serving benchmark's floor: FAISS retrieval + shared features + LightGBM in process, on the
cell's own core, with none of the cell's servers, Redis or rules around it. The end-to-end figures
of benchmarks/serving_bench.py are read as ratios to it."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from serving.benchmarking import LatencyStats, percentile, summarize

if TYPE_CHECKING:
    from benchmarks.serving_bench import BenchStack


@dataclass(frozen=True)
class Floor:
    """The same full-ranking work in this process, without Redis, servers or rules."""

    total: LatencyStats
    candidates_p50_ms: float
    """FAISS search + the rule retrievers + merging."""
    features_p50_ms: float
    predict_p50_ms: float
    candidate_counts: tuple[float, float, float]
    """Candidates ranked per request: p5, p50, p95."""
    cpu_ms: float
    """Mean thread CPU time per request: unlike wall time, not inflated when other processes take the core."""

    def to_dict(self) -> dict[str, Any]:
        p5, p50, p95 = self.candidate_counts
        return {**self.total.to_dict(), "cpu_ms": round(self.cpu_ms, 4), "candidates_p50_ms": round(self.candidates_p50_ms, 4),
                "features_p50_ms": round(self.features_p50_ms, 4), "predict_p50_ms": round(self.predict_p50_ms, 4),
                "candidates": {"p5": p5, "p50": p50, "p95": p95}}


class FloorMeter:
    """The floor, measured in chunks on the cell's core while the cell is idle (between chunks of
    the full-ranking phases: `run_serving_bench` interleaves them)."""

    def __init__(self, stack: BenchStack) -> None:
        import faiss

        from serving.bundle import LoadedBundle

        faiss.omp_set_num_threads(1)
        self.stack = stack
        self.bundle = LoadedBundle.load(stack.bundle_dir)
        self.users = list(stack.users)
        self.parts: dict[str, list[float]] = {"total": [], "candidates": [], "features": [], "predict": []}
        self.counts: list[float] = []
        self.cpu_s = 0.0
        self.done = 0
        self.run(len(self.users), keep=False)  # the first pass over the users warms caches and is not kept

    def run(self, requests: int, *, keep: bool = True) -> None:
        before = os.sched_getaffinity(0)
        os.sched_setaffinity(0, self.stack.cell_cpus)  # the cell is idle now: measure on the very core it runs on
        try:
            self._loop(requests, keep=keep)
        finally:
            os.sched_setaffinity(0, before)

    def _loop(self, requests: int, *, keep: bool) -> None:
        import numpy as np

        from regions.geo import home_geography_of

        bundle, stack = self.bundle, self.stack
        for n in range(self.done, self.done + requests):
            user_id = self.users[n % len(self.users)]
            state = stack.users[user_id]
            now = time.time()
            c0 = time.thread_time()
            t0 = time.perf_counter()
            vector = bundle.user_embedding(user_id, state)
            segment = bundle.user_segment.get(user_id) or bundle.segment_of({"geo": home_geography_of(user_id, stack.topology)})
            cands = bundle.candidates(state=state, user_vector=vector, segment_key=segment, now=now)
            t1 = time.perf_counter()
            X = bundle.features(state=state, user_vector=vector, candidates=cands, now=now)
            t2 = time.perf_counter()
            np.asarray(bundle.ranker.predict(X, num_threads=1))
            t3 = time.perf_counter()
            c1 = time.thread_time()
            if not keep:
                continue
            self.cpu_s += c1 - c0
            for key, value in (("total", t3 - t0), ("candidates", t1 - t0), ("features", t2 - t1), ("predict", t3 - t2)):
                self.parts[key].append(value * 1000.0)
            self.counts.append(float(len(cands)))
        self.done += requests

    def result(self) -> Floor:
        parts, counts = self.parts, self.counts
        wall = sum(parts["total"]) / 1000.0
        return Floor(total=summarize(parts["total"], wall_s=wall), candidates_p50_ms=percentile(parts["candidates"], 50),
                     features_p50_ms=percentile(parts["features"], 50), predict_p50_ms=percentile(parts["predict"], 50),
                     candidate_counts=(percentile(counts, 5), percentile(counts, 50), percentile(counts, 95)),
                     cpu_ms=self.cpu_s * 1000.0 / len(parts["total"]))


def measure_floor(stack: BenchStack, *, requests: int) -> Floor:
    meter = FloorMeter(stack)
    meter.run(requests)
    return meter.result()
