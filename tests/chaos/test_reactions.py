"""Reacting users (chaos.reactions): clicks follow the table and the slot, carts follow clicks,
purchases carry the price; what the marketplace's latent preferences make of a good slate."""
from __future__ import annotations

import numpy as np
import pytest

from chaos.reactions import ReactionTable, position_weight
from regions.errors import InputError


def table(click: float, cart: float = 0.0, purchase: float = 0.0) -> ReactionTable:
    shape = (2, 3)
    return ReactionTable(user_ids=("us-1", "us-2"), item_ids=("a", "b", "c"), click=np.full(shape, click),
                         cart=np.full(shape, cart), purchase=np.full(shape, purchase), price=np.array([1.0, 2.0, 3.0]))


def test_click_rates_follow_the_table_and_fall_with_the_slot() -> None:
    rng = np.random.default_rng(0)
    t = table(0.5)
    firsts = seconds = 0
    for _ in range(4000):
        got = t.react("us-1", ["a", "b"], rng, now=1.0)
        firsts += any(e["item_id"] == "a" for e in got)
        seconds += any(e["item_id"] == "b" for e in got)
    assert firsts / 4000 == pytest.approx(0.5, abs=0.03)
    assert seconds / 4000 == pytest.approx(0.5 * position_weight(1), abs=0.03)


def test_carts_follow_clicks_and_purchases_carry_the_price() -> None:
    got = table(1.0, 1.0, 1.0).react("us-2", ["c"], np.random.default_rng(0), now=5.0)
    assert [e["type"] for e in got] == ["view", "cart", "purchase"]
    assert got[2]["price"] == 3.0 and all(e["ts"] == 5.0 and e["user_id"] == "us-2" for e in got)
    assert len({e["event_id"] for e in got}) == 3
    assert table(0.0).react("us-1", ["a", "b", "c"], np.random.default_rng(0)) == []
    assert table(1.0).react("us-9", ["a"], np.random.default_rng(0)) == []  # not a load user


def test_a_malformed_table_is_refused_naming_the_field() -> None:
    with pytest.raises(InputError, match="^click:"):
        ReactionTable(user_ids=("us-1",), item_ids=("a",), click=np.full((1, 1), 1.5), cart=np.zeros((1, 1)),
                      purchase=np.zeros((1, 1)), price=np.ones(1))
    with pytest.raises(InputError, match="^price:"):
        ReactionTable(user_ids=("us-1",), item_ids=("a",), click=np.zeros((1, 1)), cart=np.zeros((1, 1)),
                      purchase=np.zeros((1, 1)), price=np.ones(2))


def test_the_marketplace_users_prefer_the_items_they_were_drawn_to_like() -> None:
    from serving import marketplace

    data = marketplace.generate_named("tiny", seed=1, geographies={"us": 0.6, "eu": 0.4})
    users = [u.user_id for u in data.users[:20]]
    t = ReactionTable(**marketplace.reaction_arrays(data, users))
    for n in range(20):
        interest = data.latent.interest(n)
        best, worst = np.argsort(-interest)[:8], np.argsort(interest)[:8]
        assert t.click[n, best].mean() > 5 * t.click[n, worst].mean()
    with pytest.raises(InputError, match="^users:"):
        marketplace.reaction_arrays(data, ["us-99999"])
