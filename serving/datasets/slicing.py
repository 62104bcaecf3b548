"""Small slices of a Dataset (tests, quick looks): the same shapes, fewer users."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from serving.datasets.base import sample_users
from serving.marketplace import Dataset


def first_users(dataset: Dataset, max_users: int) -> Dataset:
    """Only the events of `max_users` users (a stable hash sample); items and users tables unchanged
    (indexes into them stay valid)."""
    keep_ids = sample_users([u.user_id for u in dataset.users], max_users)
    keep = np.array([u.user_id in keep_ids for u in dataset.users])
    return replace(dataset, events=dataset.events.select(keep[dataset.events.user]), name=f"{dataset.name}[{max_users} users]")
