"""Online quality of a geography, from its own cells: attributed totals per bundle version or arm.

Each cell computes its region's totals from its own interaction log and impressions
(online_metrics.from_logs, behind the cell's `GET /v1/online-metrics`), so user ids never leave
the geography; only totals travel. This module asks every cell of the geography and adds them up
(online_metrics.attribution.merge_totals). A cell that does not answer is left out and named.
"""
from __future__ import annotations

from typing import Any, Mapping

import httpx

from online_metrics.attribution import VariantTotals, merge_totals
from regions.topology import Topology

PATH = "/v1/online-metrics"
TIMEOUT_S = 2.0


class CellQuality:
    def __init__(self, topology: Topology, *, timeout_s: float = TIMEOUT_S, client: httpx.Client | None = None) -> None:
        self.topology = topology
        self._client = client or httpx.Client(timeout=timeout_s)
        self.errors: dict[str, str] = {}

    def totals(self, geo: str, *, since_ts: float, by: str = "bundle_version",
               experiment: str | None = None) -> dict[str, VariantTotals] | None:
        """Totals added over the geography's cells; None when no cell answered."""
        host = self.topology.settings.host
        params: dict[str, Any] = {"since_ts": since_ts, "by": by}
        if experiment:
            params["experiment"] = experiment
        parts: list[Mapping[str, VariantTotals]] = []
        for region in sorted(r.name for r in self.topology.regions.values() if r.geography == geo):
            port = self.topology.region(region).http_port
            try:
                resp = self._client.get(f"http://{host}:{port}{PATH}", params=params)
                resp.raise_for_status()
                parts.append({k: VariantTotals.from_dict(v) for k, v in resp.json()["totals"].items()})
                self.errors.pop(region, None)
            except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError) as exc:
                self.errors[region] = f"{type(exc).__name__}: {exc}"
        return merge_totals(parts) if parts else None

    def by_version(self, geo: str, since_ts: float) -> dict[str, VariantTotals] | None:
        """The rollout driver's QualityReader."""
        return self.totals(geo, since_ts=since_ts)

    def close(self) -> None:
        self._client.close()


__all__ = ["CellQuality"]
