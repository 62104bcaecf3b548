"""`--data NAME|PATH` -> an adapter. The names are the shipped adapters; anything else must be a
directory in the csv layout (serving.datasets.csv_dir)."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

from regions.errors import InputError
from serving.datasets.base import DatasetAdapter
from serving.datasets.completejourney import CompleteJourneyAdapter
from serving.datasets.csv_dir import CsvDirAdapter
from serving.datasets.movielens import MovieLensAdapter
from serving.datasets.synthetic import SyntheticAdapter

ADAPTERS: Mapping[str, DatasetAdapter] = {a.name: a for a in (SyntheticAdapter(), CompleteJourneyAdapter(), MovieLensAdapter())}


def adapter_for(source: str) -> DatasetAdapter:
    if source in ADAPTERS:
        return ADAPTERS[source]
    path = Path(source)
    if path.is_dir():
        return CsvDirAdapter.at(path)
    raise InputError("--data", f"unknown data source {source!r}; allowed: {', '.join(ADAPTERS)} or a directory "
                               "holding items.csv and events.csv")
