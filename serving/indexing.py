"""FAISS index over item embeddings (inner product; ids are row numbers).

Kind chosen by size: exact `flat` for small catalogs (exact and already fast), `hnsw` up to
HNSW_MAX items, `ivf` beyond (smaller memory, trainable). Parameters that matter at search time
(efSearch, nprobe) are set before writing, and faiss stores them in the file.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from regions.errors import InputError, PermanentError

KINDS = ("flat", "hnsw", "ivf")


@dataclass(frozen=True)
class IndexSettings:
    """Index choice and parameters; each default carries its reason."""

    flat_max: int = 1_000
    """Up to 1k items exact search costs microseconds: no reason to approximate."""
    hnsw_max: int = 500_000
    """HNSW memory grows with M links per item; past ~0.5 M items IVF is the cheaper choice."""
    hnsw_m: int = 32
    """Links per node: the usual recall/memory balance."""
    hnsw_ef_construction: int = 80
    """Build-time beam: good graph quality at a modest build cost."""
    hnsw_ef_search: int = 128
    """Search beam >= the k we ask for (100), recall ~0.95+."""
    ivf_nprobe: int = 16
    """Lists probed per query: recall ~0.9+ with nlist = 4 sqrt(n)."""
    num_threads: int = 2
    """The shared machines have 2 cores."""


def choose_kind(n_items: int, settings: IndexSettings = IndexSettings()) -> str:
    if n_items < 0:
        raise InputError("n_items", f"must be >= 0, got {n_items}")
    if n_items <= settings.flat_max:
        return "flat"
    return "hnsw" if n_items <= settings.hnsw_max else "ivf"


def build_index(vectors: np.ndarray, *, kind: str | None = None, settings: IndexSettings = IndexSettings()):  # type: ignore[no-untyped-def]
    """An inner-product index holding `vectors` with ids 0..n-1."""
    import faiss

    faiss.omp_set_num_threads(settings.num_threads)
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = x.shape
    kind = kind or choose_kind(n, settings)
    if kind not in KINDS:
        raise InputError("kind", f"unknown index kind {kind!r}; allowed: {', '.join(KINDS)}")
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, settings.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = settings.hnsw_ef_construction
        index.hnsw.efSearch = settings.hnsw_ef_search
    else:
        nlist = max(1, min(int(4 * math.sqrt(max(n, 1))), max(n // 39, 1)))
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(x)
        index.nprobe = min(settings.ivf_nprobe, nlist)
    index.add(x)
    return index


def search(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    """(scores, rows) for each query; rows are -1 where fewer than k items exist."""
    q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    scores, rows = index.search(q, int(min(k, max(index.ntotal, 1))))
    return scores, rows


def write_index(index, path: Path) -> None:  # type: ignore[no-untyped-def]
    import faiss

    faiss.write_index(index, str(path))


def read_index(path: Path):  # type: ignore[no-untyped-def]
    """Read an index; a file that is not one raises PermanentError."""
    import faiss

    try:
        return faiss.read_index(str(path))
    except RuntimeError as exc:
        raise PermanentError(f"{path.name} is not a FAISS index ({str(exc).splitlines()[0] if str(exc) else exc})") from exc
