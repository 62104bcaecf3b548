"""A deterministic, seeded synthetic marketplace: catalog, users and their sessions.

Same seed and size -> the same data, byte for byte (no clock, no environment; `START_TS` is fixed).

How the data is drawn, so that personalisation measurably beats popularity:
- a two-level category tree (parent `p03`, child `p03.c2`); each category has a latent centre, an
  item's latent vector is its category's centre plus noise; popularity is power-law (Zipf-like);
  prices are log-normal per parent category, some items change price once during the period;
- a user's id carries the home geography (`us-123`, `eu-45`; geographies drawn by `peak_share`);
  segment attributes: country, device, new/returning, price band; a latent taste built from two
  or three favourite categories;
- a session picks a focus category from the user's taste, then views items (mostly from that
  category), each preceded by an impression; a view becomes a cart with a probability rising with
  taste and falling with price for price-sensitive users; carts become purchases; a purchase pulls
  in the item's complement now and then (so co-purchase is real); a few popular items are shown
  (impressions) without being viewed.

`Dataset`, `ItemRow`, `UserRow` and `EventTable` are the shapes training consumes; the
completejourney loader produces the same ones.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from contracts.events import EVENT_TYPES, Event

START_TS = 1_767_225_600.0
"""2026-01-01T00:00:00Z: a fixed origin so the data never depends on the clock."""
DAY = 86400.0
KIND_CODE = {name: code for code, name in enumerate(EVENT_TYPES)}
"""Event type -> int8 code in EventTable.kind (impression 0, view 1, cart 2, purchase 3)."""
DEVICES = ("mobile", "desktop", "app")
PRICE_BANDS = ("low", "mid", "high")
_COUNTRIES = {"us": ("US",), "eu": ("DE", "FR", "GB", "ES", "IT", "NL")}


@dataclass(frozen=True)
class MarketplaceSize:
    """How big a synthetic marketplace is; each size's numbers carry their reason in SIZES."""

    n_items: int
    n_users: int
    days: float
    n_parents: int = 12
    children_per_parent: int = 6
    sessions_per_user: float = 8.0


SIZES: Mapping[str, MarketplaceSize] = {
    "tiny": MarketplaceSize(n_items=400, n_users=300, days=30, n_parents=6, children_per_parent=4, sessions_per_user=5.0),
    # tiny: a whole training run in a few seconds, for tests
    "demo": MarketplaceSize(n_items=3000, n_users=2000, days=60),
    # demo: trains end to end in well under a minute on 2 cores
    "bench": MarketplaceSize(n_items=50_000, n_users=20_000, days=60, n_parents=30, children_per_parent=10),
    # bench: big enough that FAISS picks HNSW and feature/ranking cost is realistic
}


@dataclass(frozen=True)
class ItemRow:
    """One catalog row; the fields of items.json."""

    item_id: str
    category: str
    parent_category: str
    brand: str
    price: float
    """Price at the end of the data; `Dataset.prices_at(ts)` gives the price at any time."""
    stock: int
    rating: float
    created_at: float


@dataclass(frozen=True)
class UserRow:
    user_id: str
    geo: str
    country: str
    device: str
    lifecycle: str
    """'new' (first seen during the period) or 'returning'."""
    price_band: str

    def attrs(self) -> dict[str, str]:
        """Segment attributes, as the cell receives them."""
        return {"geo": self.geo, "country": self.country, "device": self.device,
                "lifecycle": self.lifecycle, "price_band": self.price_band}


@dataclass(frozen=True, eq=False)
class EventTable:
    """Events as columns, sorted by time. `user`/`item` index Dataset.users/items."""

    user: np.ndarray
    item: np.ndarray
    kind: np.ndarray
    ts: np.ndarray
    price: np.ndarray
    session: np.ndarray

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    def select(self, mask: np.ndarray) -> "EventTable":
        return EventTable(user=self.user[mask], item=self.item[mask], kind=self.kind[mask],
                          ts=self.ts[mask], price=self.price[mask], session=self.session[mask])

    def before(self, ts: float) -> "EventTable":
        return self.select(self.ts < ts)

    def between(self, start: float, end: float) -> "EventTable":
        return self.select((self.ts >= start) & (self.ts < end))

    @staticmethod
    def from_columns(*, user: Sequence[int], item: Sequence[int], kind: Sequence[int], ts: Sequence[float],
                     price: Sequence[float], session: Sequence[int]) -> "EventTable":
        ts_arr = np.asarray(ts, dtype=np.float64)
        user_arr = np.asarray(user, dtype=np.int32)
        order = np.lexsort((np.arange(len(ts_arr)), user_arr, ts_arr))  # time, then user, then draw order
        return EventTable(
            user=user_arr[order], item=np.asarray(item, dtype=np.int32)[order],
            kind=np.asarray(kind, dtype=np.int8)[order], ts=ts_arr[order],
            price=np.asarray(price, dtype=np.float32)[order], session=np.asarray(session, dtype=np.int32)[order],
        )


@dataclass(frozen=True, eq=False)
class Dataset:
    name: str
    items: tuple[ItemRow, ...]
    users: tuple[UserRow, ...]
    events: EventTable
    start: float
    end: float
    price_changes: tuple[tuple[int, float, float], ...] = field(default=())
    """(item row, ts, new price): the price before ts is `initial_prices[row]`."""
    initial_prices: tuple[float, ...] = field(default=())
    notes: Mapping[str, int] = field(default_factory=dict)
    """Odd rows the adapter repaired or dropped, by kind (serving.datasets.base.build_dataset)."""
    latent: "LatentPreferences | None" = None
    """The synthetic marketplace's hidden truth (None for real data sets): what its users like."""

    def only_users(self, keep: Sequence[int], *, name: str) -> "Dataset":
        """The users at rows `keep` (in that order) and their events only, user indices renumbered;
        every item of the catalog. Pure."""
        new_index = np.full(len(self.users), -1, dtype=np.int64)
        new_index[list(keep)] = np.arange(len(keep))
        ev = self.events.select(new_index[self.events.user] >= 0)
        events = EventTable(user=new_index[ev.user].astype(np.int32), item=ev.item, kind=ev.kind, ts=ev.ts,
                            price=ev.price, session=ev.session)
        latent = self.latent and replace(self.latent, taste=self.latent.taste[list(keep)],
                                         sensitivity=self.latent.sensitivity[list(keep)])
        return replace(self, name=name, users=tuple(self.users[n] for n in keep), events=events, latent=latent)

    def prices_at(self, ts: float) -> np.ndarray:
        """Every item's price at time `ts`."""
        prices = np.array(self.initial_prices or [i.price for i in self.items], dtype=np.float64)
        for row, when, new in self.price_changes:
            if when <= ts:
                prices[row] = new
        return prices

    def iter_events(self, table: EventTable | None = None) -> Iterator[Event]:
        """The table as contracts.events.Event objects (what the interaction log carries)."""
        table = self.events if table is None else table
        for n in range(len(table)):
            user = self.users[int(table.user[n])]
            yield Event(
                event_id=f"{self.name}-{n}", user_id=user.user_id, item_id=self.items[int(table.item[n])].item_id,
                type=EVENT_TYPES[int(table.kind[n])], ts=float(table.ts[n]), geo=user.geo,
                session_id=f"s{int(table.session[n])}", seq=n, price=float(table.price[n]),
            )


PRICE_SENSITIVITY = {"low": 1.5, "mid": 0.6, "high": 0.0}
"""How strongly a price band's users avoid items dear for their category."""
CLICK_Z0 = 3.0
"""A shown item is clicked with probability sigmoid(interest - 3) at the top slot, `interest` the
logit the generator picks the user's views by, standardised per user: a typical item (0) 5 %, one
of the user's favourites (2.5 and above) 38 % and more. Lower slots are examined less (chaos.reactions)."""


def price_acceptance(sensitivity: float, price: np.ndarray | float, parent_price: np.ndarray | float) -> np.ndarray:
    """1 for a price at or below the category's usual one, falling with the overprice for sensitive users."""
    return np.exp(-sensitivity * np.maximum(np.log(np.asarray(price) / (np.asarray(parent_price) + 0.49)), 0.0))


def cart_probability(z: np.ndarray | float, price_ok: np.ndarray | float) -> np.ndarray:
    """P(cart | viewed): rising with the user's affinity z, falling with price (for the sensitive)."""
    return np.asarray(price_ok) / (1.0 + np.exp(-(np.asarray(z) - 3.0)))


def purchase_probability(price_ok: np.ndarray | float) -> np.ndarray:
    """P(purchase | carted)."""
    return 0.35 + 0.4 * np.asarray(price_ok)


@dataclass(frozen=True, eq=False)
class LatentPreferences:
    """What each user of a synthetic marketplace likes, as the generator drew it. `interest` is the
    logit the generator picks a user's views by (affinity = item latent . taste, plus popularity,
    minus price for the price-sensitive), standardised per user; `z` is the standardised affinity
    alone, which the generator's cart model uses."""

    item_latent: np.ndarray
    """items x dim."""
    taste: np.ndarray
    """users x dim."""
    sensitivity: np.ndarray
    """Per user (PRICE_SENSITIVITY of the price band)."""
    log_popularity: np.ndarray
    log_relative_price: np.ndarray
    parent_price: np.ndarray
    """Per item: popularity (log), price relative to its category (log), its parent category's usual price."""

    def z(self, user: int) -> np.ndarray:
        affinity = self.item_latent @ self.taste[user]
        return (affinity - affinity.mean()) / (affinity.std() + 1e-9)

    def interest(self, user: int) -> np.ndarray:
        logits = self.item_latent @ self.taste[user] + 0.6 * self.log_popularity - self.sensitivity[user] * self.log_relative_price
        return (logits - logits.mean()) / (logits.std() + 1e-9)

    def reaction_probabilities(self, user: int, prices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For every item: P(click | shown at the top slot), P(cart | click), P(purchase | cart)."""
        ok = price_acceptance(float(self.sensitivity[user]), prices, self.parent_price)
        click = 1.0 / (1.0 + np.exp(-(self.interest(user) - CLICK_Z0)))
        return click, cart_probability(self.z(user), ok), np.broadcast_to(purchase_probability(ok), ok.shape)


def reaction_arrays(dataset: Dataset, user_ids: Sequence[str]) -> dict[str, Any]:
    """The reacting load's table (chaos.reactions.ReactionTable's fields) for `user_ids`: per user
    and item P(click | top slot), P(cart | click), P(purchase | cart), and the items' prices.
    InputError when the data set has no latent preferences or a user is not in it."""
    from regions.errors import InputError

    if dataset.latent is None:
        raise InputError("data", f"{dataset.name} has no latent preferences (only the synthetic marketplace has)")
    row = {u.user_id: n for n, u in enumerate(dataset.users)}
    missing = [u for u in user_ids if u not in row]
    if missing:
        raise InputError("users", f"{len(missing)} users are not in {dataset.name} (first: {missing[0]!r})")
    prices = np.array([i.price for i in dataset.items], dtype=np.float64)
    tables = [dataset.latent.reaction_probabilities(row[u], prices) for u in user_ids]
    return {"user_ids": tuple(user_ids), "item_ids": tuple(i.item_id for i in dataset.items),
            "click": np.array([t[0] for t in tables], dtype=np.float32),
            "cart": np.array([t[1] for t in tables], dtype=np.float32),
            "purchase": np.array([t[2] for t in tables], dtype=np.float32), "price": prices}


def countries_of(geo: str) -> tuple[str, ...]:
    return _COUNTRIES.get(geo, (geo.upper(),))


def _draw_users(rng: np.random.Generator, n: int, geographies: Mapping[str, float]) -> tuple[UserRow, ...]:
    names = sorted(geographies)
    shares = np.array([geographies[g] for g in names], dtype=np.float64)
    geo_idx = rng.choice(len(names), size=n, p=shares / shares.sum())
    device = rng.choice(len(DEVICES), size=n, p=[0.55, 0.3, 0.15])
    band = rng.choice(len(PRICE_BANDS), size=n, p=[0.35, 0.45, 0.2])
    new = rng.random(n) < 0.3
    counters = {g: 0 for g in names}
    users = []
    for u in range(n):
        geo = names[int(geo_idx[u])]
        counters[geo] += 1
        countries = countries_of(geo)
        users.append(UserRow(
            user_id=f"{geo}-{counters[geo]}", geo=geo, country=countries[int(rng.integers(len(countries)))],
            device=DEVICES[int(device[u])], lifecycle="new" if new[u] else "returning",
            price_band=PRICE_BANDS[int(band[u])],
        ))
    return tuple(users)


def generate(size: MarketplaceSize, *, seed: int, geographies: Mapping[str, float]) -> Dataset:
    """The synthetic marketplace for `size` and `seed`; `geographies` maps name -> peak_share."""
    rng = np.random.default_rng(seed)
    dim = 12
    n_par, n_cat, n_items = size.n_parents, size.n_parents * size.children_per_parent, size.n_items
    start, end = START_TS, START_TS + size.days * DAY

    # Catalog: items are grouped by category (contiguous rows), so a category is a slice.
    par_centre = rng.normal(size=(n_par, dim))
    parent_of_cat = np.repeat(np.arange(n_par), size.children_per_parent)
    cat_centre = par_centre[parent_of_cat] + 0.7 * rng.normal(size=(n_cat, dim))
    cat_size = rng.dirichlet(np.full(n_cat, 2.0))
    cat = np.sort(rng.choice(n_cat, size=n_items, p=cat_size))
    lo = np.searchsorted(cat, np.arange(n_cat), side="left")
    hi = np.searchsorted(cat, np.arange(n_cat), side="right")
    latent = (cat_centre[cat] + 0.6 * rng.normal(size=(n_items, dim))) / np.sqrt(dim)
    pop_rank = rng.permutation(n_items)
    log_pop = -1.0 * np.log(pop_rank + 5.0)
    par_price = np.exp(rng.normal(3.0, 0.8, size=n_par))
    rel_price = np.exp(rng.normal(0.0, 0.35, size=n_items))
    price0 = np.round(par_price[parent_of_cat[cat]] * rel_price, 2) + 0.49
    changed = np.flatnonzero(rng.random(n_items) < 0.15)
    change_ts = start + rng.random(len(changed)) * (end - start)
    change_factor = np.exp(rng.normal(0.0, 0.2, size=len(changed)))
    change_at = np.full(n_items, np.inf)
    change_at[changed] = change_ts
    price1 = price0.copy()
    price1[changed] = np.round(price0[changed] * change_factor, 2)
    rating = np.round(np.clip(rng.normal(4.0, 0.5, size=n_items) + 0.15 * (log_pop - log_pop.mean()), 1.0, 5.0), 1)
    stock = rng.poisson(40, size=n_items) * (rng.random(n_items) > 0.05)
    brand = rng.integers(0, 8, size=n_items)
    created = np.where(rng.random(n_items) < 0.85, start - rng.random(n_items) * 365 * DAY,
                       start + rng.random(n_items) * (end - start))
    complement = np.empty(n_items, dtype=np.int64)
    comp_cat = (cat + 1 + rng.integers(0, size.children_per_parent - 1, size=n_items)) % n_cat
    for i in range(n_items):
        c = int(comp_cat[i])
        complement[i] = lo[c] + int(rng.integers(0, max(hi[c] - lo[c], 1))) if hi[c] > lo[c] else i
    id_perm = rng.permutation(n_items)  # ids do not reveal the category grouping
    items = tuple(
        ItemRow(
            item_id=f"sku-{int(id_perm[i]):06d}", category=f"p{parent_of_cat[cat[i]]:02d}.c{cat[i] % size.children_per_parent}",
            parent_category=f"p{parent_of_cat[cat[i]]:02d}", brand=f"b{parent_of_cat[cat[i]]:02d}-{brand[i]}",
            price=float(price1[i]), stock=int(stock[i]), rating=float(rating[i]), created_at=float(created[i]),
        )
        for i in range(n_items)
    )

    users = _draw_users(rng, size.n_users, geographies)
    sensitivity = PRICE_SENSITIVITY
    tastes = np.zeros((len(users), dim))
    cols: dict[str, list[float]] = {k: [] for k in ("user", "item", "kind", "ts", "price", "session")}
    session_id = 0

    def emit(u: int, i: int, kind: str, ts: float, price: float) -> None:
        cols["user"].append(u); cols["item"].append(i); cols["kind"].append(KIND_CODE[kind])
        cols["ts"].append(ts); cols["price"].append(price); cols["session"].append(session_id)

    pop_cdf = np.cumsum(np.exp(log_pop))
    pop_cdf /= pop_cdf[-1]
    for u, user in enumerate(users):
        favourites = rng.choice(n_cat, size=int(rng.integers(2, 4)), replace=False)
        taste = cat_centre[favourites].mean(axis=0) + 0.5 * rng.normal(size=dim)
        taste = 2.2 * taste / (np.linalg.norm(taste) / np.sqrt(dim) + 1e-9)
        tastes[u] = taste
        affinity = latent @ taste
        s = sensitivity[user.price_band]
        logits = affinity + 0.6 * log_pop - s * np.log(rel_price)
        prob = np.exp(logits - logits.max())
        cdf = np.cumsum(prob)
        cat_mass = cdf[hi - 1] - np.where(lo > 0, cdf[np.maximum(lo - 1, 0)], 0.0)
        cat_mass = np.where(hi > lo, cat_mass, 0.0)
        aff_mean, aff_std = affinity.mean(), affinity.std() + 1e-9
        first = start + (rng.random() * (end - start) * 0.8 if user.lifecycle == "new" else 0.0)
        n_sessions = 1 + rng.poisson(size.sessions_per_user * rng.lognormal(0.0, 0.5))
        for t0 in np.sort(first + rng.random(n_sessions) * (end - first)):
            session_id += 1
            focus = int(rng.choice(n_cat, p=cat_mass / cat_mass.sum()))
            ts = float(t0)
            for i in np.searchsorted(pop_cdf, rng.random(4)):  # shown, not viewed
                if created[i] <= ts:
                    emit(u, int(i), "impression", ts, 0.0)
            for _ in range(1 + int(rng.geometric(0.3))):
                ts += float(rng.exponential(45.0)) + 1.0
                if rng.random() < 0.7 and hi[focus] > lo[focus]:
                    a = cdf[lo[focus] - 1] if lo[focus] > 0 else 0.0
                    i = int(np.searchsorted(cdf, a + rng.random() * (cdf[hi[focus] - 1] - a)))
                else:
                    i = int(np.searchsorted(cdf, rng.random() * cdf[-1]))
                i = min(i, n_items - 1)
                if created[i] > ts:
                    continue
                price = float(price1[i] if ts >= change_at[i] else price0[i])
                price_ok = float(price_acceptance(s, price, par_price[parent_of_cat[cat[i]]]))
                emit(u, i, "impression", ts - 0.5, 0.0)
                emit(u, i, "view", ts, 0.0)
                z = (affinity[i] - aff_mean) / aff_std
                if rng.random() < cart_probability(z, price_ok):
                    emit(u, i, "cart", ts + 5.0, 0.0)
                    if rng.random() < purchase_probability(price_ok):
                        emit(u, i, "purchase", ts + 60.0, price)
                        j = int(complement[i])
                        if rng.random() < 0.35 and created[j] <= ts:
                            pj = float(price1[j] if ts >= change_at[j] else price0[j])
                            emit(u, j, "cart", ts + 30.0, 0.0)
                            emit(u, j, "purchase", ts + 61.0, pj)
    events = EventTable.from_columns(**{k: v for k, v in cols.items()})  # type: ignore[arg-type]
    return Dataset(
        name=f"synthetic-{seed}", items=items, users=users, events=events, start=start, end=end,
        price_changes=tuple((int(i), float(t), float(price1[i])) for i, t in zip(changed, change_ts)),
        initial_prices=tuple(float(p) for p in price0),
        latent=LatentPreferences(item_latent=latent, taste=tastes, sensitivity=np.array([sensitivity[u.price_band] for u in users]),
                                 log_popularity=log_pop, log_relative_price=np.log(rel_price),
                                 parent_price=par_price[parent_of_cat[cat]]),
    )


def generate_named(size: str, *, seed: int, geographies: Mapping[str, float]) -> Dataset:
    """`generate` by size name; InputError names the allowed sizes."""
    from regions.errors import InputError

    if size not in SIZES:
        raise InputError("size", f"unknown size {size!r}; allowed: {', '.join(SIZES)}")
    return generate(SIZES[size], seed=seed, geographies=geographies)
