"""edge.fast_reads: the lean read path's query parsing (pure); the routes are exercised in test_edge."""
from __future__ import annotations

import pytest

from edge.fast_reads import budget_ms, read_call
from regions.errors import InputError


def call(surface: str, **params: str) -> dict:  # type: ignore[type-arg]
    return read_call(surface, params, default_count=20, max_count=100)


def test_valid_reads_become_edge_calls() -> None:
    assert call("homepage", user_id="us-1") == {"surface": "homepage", "user_id": "us-1", "count": 20}
    assert call("similar", product_id="p", count="5") == {"surface": "similar", "user_id": None, "product_id": "p", "count": 5}
    assert call("cart", cart_items=" a, b ,", user_id="eu-2")["cart_items"] == ("a", "b")
    assert budget_ms(150.0, None) == 150.0 and budget_ms(150.0, "40") == 40.0 and budget_ms(150.0, "900") == 150.0


@pytest.mark.parametrize(("surface", "params", "field"), [
    ("homepage", {}, "user_id"),
    ("homepage", {"user_id": ""}, "user_id"),
    ("homepage", {"user_id": "u" * 129}, "user_id"),
    ("homepage", {"user_id": "us-1", "count": "0"}, "count"),
    ("homepage", {"user_id": "us-1", "count": "101"}, "count"),
    ("homepage", {"user_id": "us-1", "count": "many"}, "count"),
    ("similar", {"count": "5"}, "product_id"),
    ("cart", {"cart_items": " , "}, "cart_items"),
    ("cart", {}, "cart_items"),
])
def test_bad_reads_name_the_field(surface: str, params: dict[str, str], field: str) -> None:
    with pytest.raises(InputError) as info:
        call(surface, **params)
    assert info.value.field == field


@pytest.mark.parametrize("header", ["soon", "0", "-5"])
def test_a_bad_deadline_header_names_it(header: str) -> None:
    with pytest.raises(InputError) as info:
        budget_ms(150.0, header)
    assert info.value.field == "X-Deadline-Ms"
