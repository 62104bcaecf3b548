"""The cell's side of feature drift: a bounded sample of the feature vectors the full-ranking tier
scored, compared (serving.drift.drift_report) with the training distribution the bundle carries
in feature_stats.json. Exported as metrics (CellMetrics.observe_drift) and in /readyz.

Sampling costs nothing on most requests: every `every`-th scored request recomputes its feature
matrix once (the same serving.features function) and keeps up to `rows_per_request` rows of it.
The cell reads `REGIONCTL_DRIFT_EVERY`, `REGIONCTL_DRIFT_ROWS_PER_REQUEST` and
`REGIONCTL_DRIFT_CAPACITY` (SamplerSettings.from_env): a low-traffic cell samples more often.
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from contracts.environment import load_settings
from regions.errors import InputError
from serving.drift import drift_report


@dataclass(frozen=True)
class SamplerSettings:
    every: int = 20
    """One scored request in 20: at 100 QPS a cell a fresh window every minute or so."""
    rows_per_request: int = 20
    """Rows kept per sampled request: many users, not one user's 200 candidates."""
    capacity: int = 5000
    """Rows kept (newest): PSI over ten bins is stable at a few thousand rows."""

    def __post_init__(self) -> None:
        for name in ("every", "rows_per_request", "capacity"):
            if getattr(self, name) < 1:
                raise InputError(name, f"must be >= 1, got {getattr(self, name)}")
        if self.capacity < self.rows_per_request:
            raise InputError("capacity", f"must be >= rows_per_request ({self.rows_per_request}), got {self.capacity}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> "SamplerSettings":
        """The defaults overridden by REGIONCTL_DRIFT_<FIELD> variables (unknown ones refused)."""
        return load_settings(cls(), environ, prefix="REGIONCTL_DRIFT_", what="drift sampler setting")


class FeatureSampler:
    def __init__(self, settings: SamplerSettings = SamplerSettings(), *, seed: int = 0) -> None:
        self.settings = settings
        self._rows: deque[np.ndarray] = deque(maxlen=settings.capacity)
        self._count = 0
        self._lock = threading.Lock()
        self._rng = np.random.default_rng(seed)

    def maybe(self, features: Callable[[], np.ndarray]) -> None:
        """Called once per scored request; computes and keeps rows on every `every`-th call."""
        with self._lock:
            self._count += 1
            if self._count % self.settings.every:
                return
        X = features()
        if len(X) == 0:
            return
        pick = self._rng.choice(len(X), size=min(self.settings.rows_per_request, len(X)), replace=False)
        with self._lock:
            self._rows.extend(X[np.sort(pick)])

    def reset(self) -> None:
        """A new bundle: its features are compared with its own training distribution."""
        with self._lock:
            self._rows.clear()

    def sample(self) -> np.ndarray:
        with self._lock:
            return np.array(self._rows) if self._rows else np.zeros((0, 0), np.float32)


def cell_drift(stats: Mapping[str, Any] | None, sample: np.ndarray, names: Sequence[str]) -> dict[str, Any] | None:
    """The drift report of the sample, or None when the bundle has no feature_stats.json."""
    if stats is None:
        return None
    if sample.size == 0:
        sample = np.zeros((0, len(names)), np.float32)
    return drift_report(stats, sample, names)
