"""The project's exception tree. Every package raises subclasses of these.

    ShopNowError
    ├── InputError            a user-supplied value is wrong (names the field and what is allowed)
    │   └── TopologyError     topology.toml is wrong (names the key and the bad value)
    ├── PermanentError        retrying will not help (checksum mismatch, unsupported schema)
    └── TemporaryError        retry later (a store or peer is unavailable); carries `delay`

Library errors are translated at the adapter that sees them and re-raised `from` the original.
"""
from __future__ import annotations


class ShopNowError(Exception):
    """Base of every error this project raises on purpose."""


class InputError(ShopNowError, ValueError):
    """A value a user gave is invalid. The message names the field and what is allowed."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message


class TopologyError(InputError):
    """topology.toml (or a topology built in code) is inconsistent."""


class PermanentError(ShopNowError):
    """An error that retrying cannot fix."""


class TemporaryError(ShopNowError):
    """An error that may go away; `delay` is the suggested wait in seconds before retrying."""

    def __init__(self, message: str, *, delay: float = 1.0) -> None:
        super().__init__(message)
        self.delay = delay
