"""The body of POST /v1/events, parsed once for the edge and the cell: {"events": [ {...}, ... ]}."""
from __future__ import annotations

import json
from typing import Any

from contracts.limits import MAX_BATCH
from regions.errors import InputError


class BatchTooLarge(InputError):
    """More than MAX_BATCH events in one request (HTTP 413)."""

    http_status = 413


def events_of_body(body: bytes) -> list[Any]:
    """The list of raw event objects; InputError (422) for a body that is not {"events": [...]}
    with 1..MAX_BATCH entries, BatchTooLarge (413) above. The events themselves are not checked here."""
    try:
        decoded = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InputError("body", 'must be JSON: {"events": [...]}') from None
    raw = decoded.get("events") if isinstance(decoded, dict) else None
    if not isinstance(raw, list) or not raw:
        raise InputError("events", 'the body must be {"events": [ ... ]}, a non-empty list of event objects')
    if len(raw) > MAX_BATCH:
        raise BatchTooLarge("events", f"{len(raw)} events; send at most {MAX_BATCH} per request (split the batch)")
    return raw
