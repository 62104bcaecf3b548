"""Adapter for `--data PATH`: a directory with items.csv, events.csv and (optional) users.csv, in
the columns of serving.datasets.base (docs/data.md), and an optional seen_policy.json."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from regions.errors import InputError
from serving.datasets.base import LoadOptions, build_dataset, sample_users
from serving.marketplace import Dataset
from serving.seen_items import SeenPolicies
from serving.time_constants import TimeConstants


@dataclass(frozen=True)
class CsvDirAdapter:
    path: Path
    name: str = "csv"
    description: str = "a directory of items.csv, events.csv [users.csv, seen_policy.json, time_constants.json]"
    seen_policy: SeenPolicies = field(default_factory=SeenPolicies)
    time_constants: TimeConstants = field(default_factory=TimeConstants)
    """time_constants.json of the directory when it has one (serving.time_constants), else the defaults."""

    @staticmethod
    def at(path: Path) -> "CsvDirAdapter":
        path = Path(path)
        for required in ("items.csv", "events.csv"):
            if not (path / required).is_file():
                raise InputError("--data", f"{path} has no {required}; a data directory needs items.csv and events.csv")
        policy = SeenPolicies()
        if (path / "seen_policy.json").is_file():
            try:
                policy = SeenPolicies.from_json(json.loads((path / "seen_policy.json").read_text()))
            except ValueError as exc:
                raise InputError("seen_policy.json", f"not JSON: {exc}") from exc
        constants = TimeConstants()
        if (path / "time_constants.json").is_file():
            constants = TimeConstants.loads((path / "time_constants.json").read_text())
        return CsvDirAdapter(path=path, name=path.name or "csv", seen_policy=policy, time_constants=constants)

    def load(self, options: LoadOptions) -> Dataset:
        import pandas as pd

        items = pd.read_csv(self.path / "items.csv")
        events = pd.read_csv(self.path / "events.csv")
        users = pd.read_csv(self.path / "users.csv") if (self.path / "users.csv").is_file() else None
        if options.max_users is not None and "user_id" in events.columns:
            events = events[events["user_id"].isin(sample_users(events["user_id"].unique().tolist(), options.max_users))]
        return build_dataset(self.name, items=items, events=events, users=users, geographies=options.geographies)
