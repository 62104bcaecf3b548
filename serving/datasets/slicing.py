"""Small slices of a Dataset (tests, quick looks): the same shapes, fewer users."""
from __future__ import annotations

from serving.datasets.base import sample_users
from serving.marketplace import Dataset


def first_users(dataset: Dataset, max_users: int) -> Dataset:
    """Only `max_users` users (a stable hash sample) and their events (Dataset.only_users); every item."""
    keep_ids = sample_users([u.user_id for u in dataset.users], max_users)
    keep = [n for n, u in enumerate(dataset.users) if u.user_id in keep_ids]
    return dataset.only_users(keep, name=f"{dataset.name}[{max_users} users]")
