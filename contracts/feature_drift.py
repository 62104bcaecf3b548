"""The feature-drift contract between a cell and whoever judges it (the alert, the drift game day):
the thresholds of the PSI each cell exports (shopnow_cell_feature_psi{feature}) and which features
a price fault moves. serving.drift computes the PSI; chaos.expectations judges it.
"""
from __future__ import annotations

PSI_ALERT = 0.25
"""PSI above 0.25: the distribution moved enough to distrust the model's scores (common practice)."""
PSI_WARN = 0.1
MIN_SAMPLE = 200
"""Fewer scored vectors than this say nothing reliable about a distribution: no verdict."""
PRICE_FEATURES = ("log_price", "price_change", "price_vs_category")
"""The features of an item's price alone (price_ratio also depends on the user's purchases): what
a price fault in the item feed moves, and what the drift game day watches."""

__all__ = ["MIN_SAMPLE", "PRICE_FEATURES", "PSI_ALERT", "PSI_WARN"]
