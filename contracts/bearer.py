"""`Authorization: Bearer <token>`, parsed once (control API and the cell's fault endpoint)."""
from __future__ import annotations

SCHEME = "Bearer "


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None when absent, another scheme or empty."""
    if not authorization or not authorization.startswith(SCHEME):
        return None
    return authorization[len(SCHEME):].strip() or None
