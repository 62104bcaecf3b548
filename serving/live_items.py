"""Live item features in process: arrays aligned with the serving catalog's rows, kept fresh off
the request path.

Item features (price, stock, rating, popularity in Redis `if:<item>`) change slowly: the bound is
15 minutes, stock must show within 10. A request reads them from these arrays by candidate row
(numpy fancy indexing, no per-candidate Python, no Redis round trip) and marks the rows it read
whose value is older than `ttl_s`; the cell's background thread re-reads the marked rows in one
call every second or so (stale-while-revalidate). A row with no usable value (never read, or
older than `max_age_s` because nobody asked for it for a while) is still read inline, by the
request that needs it, in one call. So in steady state a full ranking makes ONE Redis round trip
(the user's state), and an item's live value is at most about `ttl_s` + the refresh interval old
while it is being served.

A new catalog (bundle swap) gets a new cache, and every row is marked: the background thread
reads the whole catalog in chunks shortly after the swap.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Callable, Iterator, Sequence

import numpy as np

from serving.feature_store import ItemFeatures
from serving.features import LiveItems

TTL_S = 5.0
"""A value older than 5 s is re-read in the background the next time a request uses it."""
MAX_AGE_S = 30.0
"""Older than 30 s (nobody used the item for a while): the request reads it itself first."""
REFRESH_CHUNK = 2000
"""Rows per background read: bounded reply size and Redis time per call."""


class LiveItemCache:
    """Live features of one catalog (`ids`, `row_of`), NaN where Redis has none (use the bundle's)."""

    def __init__(self, ids: Sequence[str], row_of: Mapping[str, int], *, ttl_s: float = TTL_S,
                 max_age_s: float = MAX_AGE_S) -> None:
        n = len(ids)
        self.ids, self.row_of = ids, row_of
        self.ttl_s, self.max_age_s = ttl_s, max_age_s
        self.price, self.stock, self.rating, self.popularity = (np.full(n, np.nan) for _ in range(4))
        self.fetched_at = np.full(n, -math.inf)
        self.wanted = np.ones(n, dtype=bool)
        """Rows the background thread should read (all of them at first)."""
        self.refresh_failed = False
        """The last background read failed: values may be older than `ttl_s`."""

    def __len__(self) -> int:
        return len(self.ids)

    def rows(self, item_ids: Sequence[str]) -> np.ndarray:
        """Rows of the ids in this catalog, in order (unknown ids are dropped)."""
        row_of = self.row_of
        return np.fromiter((row_of[i] for i in item_ids if i in row_of), dtype=np.int64)

    def unusable(self, rows: np.ndarray, now: float) -> np.ndarray:
        """The rows without a usable value at `now` (never read, or older than `max_age_s`)."""
        return rows[now - self.fetched_at[rows] > self.max_age_s]

    def mark(self, rows: np.ndarray, now: float) -> None:
        """Ask the background thread to re-read the rows whose value is older than `ttl_s`."""
        self.wanted[rows[now - self.fetched_at[rows] > self.ttl_s]] = True

    def store(self, rows: np.ndarray, found: Mapping[str, ItemFeatures], now: float) -> None:
        """Values read from Redis for `rows` at `now`; a row absent from `found` has no live value."""
        ids = self.ids
        for r in rows.tolist():
            f = found.get(ids[r])
            if f is None:
                self.price[r] = self.stock[r] = self.rating[r] = self.popularity[r] = math.nan
            else:
                self.price[r], self.stock[r], self.rating[r], self.popularity[r] = f.price, f.stock, f.rating, f.popularity
        self.fetched_at[rows] = now
        self.wanted[rows] = False

    def live(self, rows: np.ndarray) -> LiveItems:
        """The features of `rows` (aligned with them) for serving.features."""
        return LiveItems(price=self.price[rows], stock=self.stock[rows], rating=self.rating[rows],
                         popularity=self.popularity[rows])

    def stock_view(self) -> "StockView":
        return StockView(self)

    def refresh(self, fetch: Callable[[list[str]], Mapping[str, ItemFeatures]], now: float, *,
                chunk: int = REFRESH_CHUNK) -> int:
        """Read up to `chunk` wanted rows with `fetch` (one call); returns how many. Raises what
        `fetch` raises (after setting `refresh_failed`)."""
        rows = np.flatnonzero(self.wanted)[:chunk]
        if not len(rows):
            return 0
        try:
            found = fetch([self.ids[r] for r in rows.tolist()])
        except Exception:
            self.refresh_failed = True
            raise
        self.refresh_failed = False
        self.store(rows, found, now)
        return len(rows)


class StockView(Mapping[str, int]):
    """The live stock of a LiveItemCache as the `stock` mapping of serving.reranking: items with a
    live value map to their unit count; others are absent (the rules trust the catalog's stock)."""

    __slots__ = ("_cache",)

    def __init__(self, cache: LiveItemCache) -> None:
        self._cache = cache

    def __getitem__(self, item_id: str) -> int:
        row = self._cache.row_of.get(item_id)
        if row is None:
            raise KeyError(item_id)
        value = self._cache.stock[row]
        if value != value:  # NaN: no live value
            raise KeyError(item_id)
        return int(value)

    def get(self, item_id: str, default: object = None) -> object:  # type: ignore[override]
        try:
            return self[item_id]
        except KeyError:
            return default

    def __bool__(self) -> bool:
        return True

    def __iter__(self) -> Iterator[str]:
        stock = self._cache.stock
        return (self._cache.ids[r] for r in np.flatnonzero(~np.isnan(stock)).tolist())

    def __len__(self) -> int:
        return int(np.count_nonzero(~np.isnan(self._cache.stock)))
