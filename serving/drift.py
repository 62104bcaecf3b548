"""Feature drift: the population stability index (PSI) of each feature between the training
distribution kept in the bundle (feature_stats.json) and the feature vectors a cell scored. Pure.

    feature_distribution(X, names)   training side: per feature, bin edges (deciles of the sample,
                                     deduplicated) and the share of the sample in each bin
    psi(expected, observed)          sum over bins of (o - e) * ln(o / e), shares floored at 1e-4
    drift_report(stats, X)           PSI per feature of a scored sample, and the features above
                                     PSI_ALERT (0.25: the usual "significant shift" threshold)

A feature that is constant in training has one bin; any value outside it lands in an open-ended
outer bin, so a constant that changes is still caught.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from contracts.feature_drift import MIN_SAMPLE, PRICE_FEATURES, PSI_ALERT, PSI_WARN  # noqa: F401 (re-exported)
from regions.errors import InputError

BINS = 10
MIN_SHARE = 1e-4


def feature_distribution(X: np.ndarray, names: Sequence[str], *, bins: int = BINS) -> dict[str, Any]:
    """{"features": {name: {"edges": [...], "shares": [...]}}, "rows": n} of a feature sample."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != len(names):
        raise InputError("features", f"expected a matrix with {len(names)} columns, got shape {X.shape}")
    out = {}
    for c, name in enumerate(names):
        col = X[:, c]
        edges = np.unique(np.quantile(col, np.linspace(0, 1, bins + 1)[1:-1])) if len(col) else np.zeros(0)
        out[name] = {"edges": [float(e) for e in edges], "shares": _shares(col, edges).tolist()}
    return {"rows": int(X.shape[0]), "bins": bins, "features": out}


def _shares(col: np.ndarray, edges: np.ndarray) -> np.ndarray:
    # Bin b holds edges[b-1] < x <= edges[b]; the first and last bins are open-ended.
    counts = np.bincount(np.searchsorted(edges, col, side="left"), minlength=len(edges) + 1).astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def psi(expected: Sequence[float], observed: Sequence[float]) -> float:
    e = np.maximum(np.asarray(expected, dtype=np.float64), MIN_SHARE)
    o = np.maximum(np.asarray(observed, dtype=np.float64), MIN_SHARE)
    if e.shape != o.shape:
        raise InputError("observed", f"expected {e.shape[0]} bins, got {o.shape[0]}")
    return float(np.sum((o - e) * np.log(o / e)))


def drift_report(stats: Mapping[str, Any], X: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
    """PSI per feature of the scored sample X against the bundle's stats; `drifted` lists the
    features above PSI_ALERT, worst first; `verdict` is 'drift', 'ok' or 'too few samples'."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != len(names):
        raise InputError("features", f"expected a matrix with {len(names)} columns, got shape {X.shape}")
    feats = stats.get("features", {})
    values = {}
    for c, name in enumerate(names):
        if name in feats:
            f = feats[name]
            values[name] = psi(f["shares"], _shares(X[:, c], np.asarray(f["edges"], dtype=np.float64)))
    drifted = sorted((n for n, v in values.items() if v > PSI_ALERT), key=lambda n: -values[n])
    if X.shape[0] < MIN_SAMPLE:
        verdict = "too few samples"
    else:
        verdict = "drift" if drifted else "ok"
    worst = max(values.values(), default=0.0)
    return {"rows": int(X.shape[0]), "psi": {n: round(v, 4) for n, v in values.items()}, "drifted": drifted,
            "max_psi": round(worst, 4) if math.isfinite(worst) else worst, "verdict": verdict}
