"""The data-set adapter interface: what an adapter hands to training, and the one builder that
turns plain tables into the pipeline's shapes (serving.marketplace.Dataset). docs/data.md says it
in prose.

An adapter is an object with
    name: str                 the `regionctl train --data NAME` name
    description: str          one line for `--help` and docs
    seen_policy: SeenPolicies what may be re-recommended on this data (serving.seen_items)
    time_constants: TimeConstants  interest fade, popularity half-life, segment list length
                              (serving.time_constants; training ships them in the bundle)
    load(options) -> Dataset  the data as Dataset (options: LoadOptions)

Most adapters build three tables and call `build_dataset`:
    items   item_id, category, parent_category, brand, price, created_at   [stock, rating]
    users   user_id                                 [geo, country, device, lifecycle, price_band]
    events  user_id, item_id, type, ts                                     [price, session]
`type` is one of contracts.events.EVENT_TYPES (impression 0, view 1, cart 3, purchase 5 are the
weights everything downstream uses), so an adapter maps its own signals onto those four.

Odd rows are repaired or dropped, never silently: every repair is counted in Dataset.notes
(`events_unknown_item`, `events_bad_time`, `items_created_after_first_event`, ...).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Mapping, Protocol

import numpy as np

from contracts.events import EVENT_TYPES
from regions.errors import InputError
from serving.marketplace import DEVICES, PRICE_BANDS, KIND_CODE, Dataset, EventTable, ItemRow, UserRow, countries_of
from serving.seen_items import SeenPolicies
from serving.time_constants import TimeConstants

ITEM_COLUMNS = ("item_id", "category", "parent_category", "brand", "price", "created_at")
USER_COLUMNS = ("user_id",)
EVENT_COLUMNS = ("user_id", "item_id", "type", "ts")
LIFECYCLES = ("new", "returning")


@dataclass(frozen=True)
class LoadOptions:
    """What every adapter is given; each default carries its reason."""

    geographies: Mapping[str, float] = field(default_factory=lambda: {"us": 1.0})
    """Geography -> peak_share of the topology: users without a geography are spread by it."""
    size: str = "demo"
    """Synthetic size name (other adapters ignore it)."""
    seed: int = 7
    """Synthetic seed (other adapters are deterministic without one)."""
    max_users: int | None = None
    """Keep only this many users (a deterministic hash sample): small slices for tests."""


class DatasetAdapter(Protocol):
    name: str
    description: str

    @property
    def seen_policy(self) -> SeenPolicies: ...

    @property
    def time_constants(self) -> TimeConstants: ...

    def load(self, options: LoadOptions) -> Dataset: ...


def stable_fraction(key: str) -> float:
    """A deterministic number in [0, 1) for a key (sha256), for geography draws and user samples."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64


def geo_of(key: str, geographies: Mapping[str, float]) -> str:
    """A geography for `key`, drawn deterministically and weighted by peak_share."""
    if not geographies:
        raise InputError("geographies", "at least one geography is needed")
    names = sorted(geographies)
    shares = np.cumsum([geographies[g] for g in names])
    u = stable_fraction(key)
    return names[int(min(np.searchsorted(shares / shares[-1], u, side="right"), len(names) - 1))]


def sample_users(user_ids, max_users: int | None) -> set:
    """The `max_users` ids with the smallest stable_fraction (all when None)."""
    ids = list(dict.fromkeys(user_ids))
    if max_users is None or len(ids) <= max_users:
        return set(ids)
    if max_users < 1:
        raise InputError("max_users", f"must be >= 1, got {max_users}")
    return set(sorted(ids, key=lambda u: (stable_fraction(f"user-{u}"), str(u)))[:max_users])


def _require(frame, columns, name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(name, f"missing column(s) {', '.join(missing)}; required: {', '.join(columns)}")


def build_dataset(name: str, *, items, events, users=None, geographies: Mapping[str, float],
                  start: float | None = None, end: float | None = None) -> Dataset:
    """pandas DataFrames -> Dataset, repairing or dropping odd rows and counting each kind in notes.

    - events of an unknown item, or with a ts that is not a finite number: dropped;
    - an event type outside EVENT_TYPES: InputError naming the type (a mapping bug, not odd data);
    - users seen only in events: added with defaults (geography by hash of the id);
    - an item whose created_at is missing or later than its first event: created_at := first event
      (otherwise training would drop those events as "before the item existed");
    - negative or missing prices: 0; missing category/brand: "UNKNOWN".
    `start`/`end` default to the first event and just after the last one.
    """
    import pandas as pd

    _require(items, ITEM_COLUMNS, "items")
    _require(events, EVENT_COLUMNS, "events")
    notes: dict[str, int] = {}
    items = items.drop_duplicates("item_id", keep="first").reset_index(drop=True)
    items["item_id"] = items["item_id"].astype(str)
    ev = events.copy()
    ev["item_id"] = ev["item_id"].astype(str)
    ev["user_id"] = ev["user_id"].astype(str)
    bad_types = sorted(set(ev["type"].unique()) - set(EVENT_TYPES))
    if bad_types:
        raise InputError("events.type", f"unknown event type(s) {bad_types[:5]}; allowed: {', '.join(EVENT_TYPES)}")
    ev["ts"] = pd.to_numeric(ev["ts"], errors="coerce")
    bad_time = ~np.isfinite(ev["ts"].to_numpy(dtype=np.float64))
    notes["events_bad_time"] = int(bad_time.sum())
    ev = ev[~bad_time]
    known = ev["item_id"].isin(set(items["item_id"]))
    notes["events_unknown_item"] = int((~known).sum())
    ev = ev[known]
    if ev.empty:
        raise InputError("events", "no event is left after dropping unknown items and bad timestamps")

    item_index = {i: n for n, i in enumerate(items["item_id"])}
    first_seen = ev.groupby("item_id")["ts"].min()
    created = pd.to_numeric(items["created_at"], errors="coerce").to_numpy(dtype=np.float64)
    first = items["item_id"].map(first_seen).to_numpy(dtype=np.float64)
    late = np.isfinite(first) & (~np.isfinite(created) | (created > first))
    notes["items_without_created_at"] = int((~np.isfinite(created)).sum())
    notes["items_created_after_first_event"] = int((late & np.isfinite(created)).sum())
    created = np.where(late, first, created)
    created = np.where(np.isfinite(created), created, float(ev["ts"].min()))
    price = pd.to_numeric(items["price"], errors="coerce").to_numpy(dtype=np.float64)
    notes["items_bad_price"] = int((~np.isfinite(price) | (price < 0)).sum())
    price = np.where(np.isfinite(price) & (price >= 0), price, 0.0)

    def text(col: str, n: int) -> str:
        v = items[col].iloc[n]
        return str(v) if isinstance(v, str) and v else "UNKNOWN"

    stock = items["stock"].to_numpy() if "stock" in items.columns else np.ones(len(items))
    rating = items["rating"].to_numpy() if "rating" in items.columns else np.zeros(len(items))
    item_rows = tuple(ItemRow(item_id=items["item_id"].iloc[n], category=text("category", n),
                              parent_category=text("parent_category", n), brand=text("brand", n),
                              price=round(float(price[n]), 4), stock=int(stock[n]), rating=float(rating[n]),
                              created_at=float(created[n])) for n in range(len(items)))

    user_meta = {}
    if users is not None:
        _require(users, USER_COLUMNS, "users")
        user_meta = {str(r["user_id"]): r for r in users.to_dict("records")}
    user_ids = list(dict.fromkeys(ev["user_id"]))
    user_rows = []
    for uid in user_ids:
        meta = user_meta.get(uid, {})
        geo = str(meta.get("geo") or geo_of(f"user-{uid}", geographies))
        if geo not in geographies:
            raise InputError("users.geo", f"user {uid} has geography {geo!r}; allowed: {', '.join(sorted(geographies))}")
        device = str(meta.get("device") or DEVICES[0])
        band = str(meta.get("price_band") or "mid")
        lifecycle = str(meta.get("lifecycle") or "returning")
        if band not in PRICE_BANDS or lifecycle not in LIFECYCLES:
            raise InputError("users", f"user {uid}: price_band must be one of {PRICE_BANDS}, lifecycle one of {LIFECYCLES}")
        prefix = f"{geo}-"
        user_rows.append(UserRow(user_id=uid if uid.startswith(prefix) else prefix + uid, geo=geo,
                                 country=str(meta.get("country") or countries_of(geo)[0]), device=device,
                                 lifecycle=lifecycle, price_band=band))
    user_index = {u: n for n, u in enumerate(user_ids)}
    session = (ev["session"].astype(str).astype("category").cat.codes.to_numpy() if "session" in ev.columns
               else np.zeros(len(ev), dtype=np.int64))
    table = EventTable.from_columns(
        user=ev["user_id"].map(user_index).to_numpy(), item=ev["item_id"].map(item_index).to_numpy(),
        kind=ev["type"].map(KIND_CODE).to_numpy(), ts=ev["ts"].to_numpy(dtype=np.float64),
        price=(pd.to_numeric(ev["price"], errors="coerce").fillna(0.0).clip(lower=0.0).to_numpy()
               if "price" in ev.columns else np.zeros(len(ev))),
        session=session,
    )
    return Dataset(name=name, items=item_rows, users=tuple(user_rows), events=table,
                   start=float(table.ts.min()) if start is None else start,
                   end=float(table.ts.max()) + 1.0 if end is None else end, notes=notes)


def with_notes(dataset: Dataset, **more: int) -> Dataset:
    return replace(dataset, notes={**dataset.notes, **more})

