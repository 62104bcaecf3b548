"""Users who react to what they are shown: the load generator's clicks, carts and purchases. Pure.

A `ReactionTable` holds, for each load user and catalog item, the probability that the user clicks
the item when it is shown at the top slot, carts it after a click, and buys it after carting, and
each item's price. The table comes from the synthetic marketplace's latent preferences
(serving.marketplace.reaction_arrays; chaos does not import serving, the caller builds it).

Slots further down are examined less: the top-slot click probability is multiplied by
1 / log2(slot + 2) (the usual position-bias model: slot 0 x1, slot 1 x0.63, slot 7 x0.32), so the
order of a slate matters, not only its set. Each shown item is an independent draw: click, then
cart, then purchase (with the item's price). `react` returns the events to POST, possibly none.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from regions.errors import InputError

__all__ = ["ReactionTable", "position_weight"]


def position_weight(slot: int) -> float:
    return float(1.0 / np.log2(slot + 2.0))


@dataclass(frozen=True, eq=False)
class ReactionTable:
    user_ids: tuple[str, ...]
    item_ids: tuple[str, ...]
    click: np.ndarray
    """users x items: P(click | shown at the top slot)."""
    cart: np.ndarray
    """users x items: P(cart | clicked)."""
    purchase: np.ndarray
    """users x items: P(purchase | carted)."""
    price: np.ndarray
    """Per item."""
    _user_row: dict[str, int] = field(init=False, repr=False)
    _item_row: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        shape = (len(self.user_ids), len(self.item_ids))
        for name in ("click", "cart", "purchase"):
            value = getattr(self, name)
            if value.shape != shape or not np.all((value >= 0) & (value <= 1)):
                raise InputError(name, f"must be a {shape[0]} x {shape[1]} array of probabilities, got shape {value.shape}")
        if self.price.shape != (shape[1],):
            raise InputError("price", f"must hold one price per item ({shape[1]}), got shape {self.price.shape}")
        object.__setattr__(self, "_user_row", {u: n for n, u in enumerate(self.user_ids)})
        object.__setattr__(self, "_item_row", {i: n for n, i in enumerate(self.item_ids)})

    def react(self, user_id: str, shown: Sequence[str], rng: np.random.Generator, *, now: float | None = None) -> list[dict[str, Any]]:
        """The events (POST /v1/events objects) user `user_id` sends after seeing `shown`, in slot order.
        Unknown users or items (not in the table) get no reaction."""
        u = self._user_row.get(user_id)
        if u is None:
            return []
        ts = time.time() if now is None else now
        session = uuid.uuid4().hex[:12]
        out: list[dict[str, Any]] = []
        for slot, item in enumerate(shown):
            i = self._item_row.get(item)
            if i is None:
                continue
            if rng.random() >= self.click[u, i] * position_weight(slot):
                continue
            base = {"user_id": user_id, "item_id": item, "ts": ts, "session_id": session}
            out.append({**base, "event_id": uuid.uuid4().hex, "type": "view"})
            if rng.random() < self.cart[u, i]:
                out.append({**base, "event_id": uuid.uuid4().hex, "type": "cart"})
                if rng.random() < self.purchase[u, i]:
                    out.append({**base, "event_id": uuid.uuid4().hex, "type": "purchase", "price": float(self.price[i])})
        return out
