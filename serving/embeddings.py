"""Item and user embeddings by implicit-feedback ALS (the `implicit` library, CPU).

Confidence of a (user, item) pair = sum of event weights (view 1, cart 3, purchase 5; impressions
0), as contracts.events.EVENT_WEIGHTS says, scaled by `alpha`. Threads are capped (the machines
running this have 2 cores shared with others).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from regions.errors import InputError, PermanentError
from contracts.events import EVENT_TYPES, EVENT_WEIGHTS

_KIND_WEIGHT = np.array([EVENT_WEIGHTS[t] for t in EVENT_TYPES], dtype=np.float32)


@dataclass(frozen=True)
class AlsSettings:
    """ALS hyper-parameters; each default carries its reason."""

    factors: int = 32
    """Enough to separate a few hundred categories of taste; small index and fast dot products."""
    iterations: int = 12
    """ALS converges in ~10 sweeps on implicit data; more buys little."""
    regularization: float = 0.05
    """Mild: the synthetic and grocery matrices are sparse but not tiny."""
    alpha: float = 2.0
    """Confidence scaling of the summed event weights (Hu, Koren, Volinsky 2008)."""
    num_threads: int = 2
    """The shared machines have 2 cores."""
    seed: int = 7
    """Deterministic factors for a given matrix."""


def interaction_matrix(*, users: np.ndarray, items: np.ndarray, kinds: np.ndarray,
                       n_users: int, n_items: int) -> sp.csr_matrix:
    """users x items CSR of summed event weights (impressions drop out)."""
    weights = _KIND_WEIGHT[kinds.astype(np.int64)]
    keep = weights > 0
    matrix = sp.coo_matrix((weights[keep], (users[keep], items[keep])), shape=(n_users, n_items), dtype=np.float32)
    return matrix.tocsr()


def fit_als(matrix: sp.csr_matrix, settings: AlsSettings = AlsSettings()) -> tuple[np.ndarray, np.ndarray]:
    """(user_factors [n_users, f], item_factors [n_items, f]) as float32."""
    if settings.factors < 1 or settings.iterations < 1:
        raise InputError("als", f"factors and iterations must be >= 1, got {settings.factors}, {settings.iterations}")
    if matrix.nnz == 0:
        raise InputError("events", "no view, cart or purchase before the cutoff: nothing to learn embeddings from")
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    try:
        with threadpool_limits(limits=1, user_api="blas"):  # implicit's own threads do the work
            model = AlternatingLeastSquares(
                factors=settings.factors, regularization=settings.regularization, alpha=settings.alpha,
                iterations=settings.iterations, num_threads=settings.num_threads, random_state=settings.seed,
            )
            model.fit(matrix.astype(np.float32), show_progress=False)
    except (ValueError, RuntimeError) as exc:
        raise PermanentError(f"ALS failed on a {matrix.shape} matrix with {matrix.nnz} entries: {exc}") from exc
    users = np.ascontiguousarray(model.user_factors, dtype=np.float32)
    items = np.ascontiguousarray(model.item_factors, dtype=np.float32)
    return users, items
