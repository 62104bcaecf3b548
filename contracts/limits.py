"""Bounds of the public API (the edge's and every cell's, HTTP and gRPC alike): one value each."""
from __future__ import annotations

MAX_COUNT = 100
"""Largest slate a request may ask for (`count` 1..100). A homepage shows 8-20 items; 100 is
generous and keeps one request's work bounded. The cell's ladder refuses more as well."""
MAX_ID_LEN = 128
"""Longest user, product, item, event or session id: a longer id is a client bug."""
MAX_BATCH = 500
"""Largest batch `POST /v1/events` (and LogEvents) accepts (413 / RESOURCE_EXHAUSTED above)."""
MAX_DEADLINE_S = 1.0
"""No client may ask a cell to spend more than a second on one request."""
SURFACES: tuple[str, ...] = ("homepage", "similar", "cart")
"""Where a slate is shown: GET /v1/recommendations/<surface>, the proto's `Surface`."""
MAX_REASON_LEN = 500
"""Longest reason an operator gives a change (drain, steer, drill, deletion): it is journaled."""
