"""The local stack's bearer tokens file: `{token: role}` or `{token: {"role": r, "name": n}}`.

One place creates it (race-safe, mode 0600) and reads roles out of it: the stack (`regionctl up`),
the controller (failover.auth builds its TokenBook on top) and the cells' chaos endpoint.
"""
from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from regions.errors import InputError, PermanentError

TOKENS_FILE = "tokens.json"
ROLES = ("viewer", "director", "chaos")
"""viewer reads; director drains, steers and drills; chaos runs drills and injects cell faults."""


def generate_tokens() -> dict[str, str]:
    """One fresh random token per role: {token: role}."""
    return {secrets.token_urlsafe(24): role for role in ROLES}


def ensure_tokens_file(path: Path) -> bool:
    """Write generated tokens to `path` (mode 0600) unless it exists. True when written.

    Written to a private temporary file first and hard-linked into place, so a controller
    starting at the same moment never reads a half-written file and never overwrites one.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise PermanentError(f"cannot create tokens file {path}: {exc}") from exc
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(generate_tokens(), fh, indent=2)
            fh.write("\n")
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError as exc:
        raise PermanentError(f"cannot create tokens file {path}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)


def read_roles(path: Path) -> dict[str, str]:
    """{token: role} from a tokens file in either form; InputError naming the file when unreadable."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError("tokens", f"cannot read {path} as JSON ({exc}); fix it or pass another tokens file") from exc
    if not isinstance(raw, Mapping):
        raise InputError("tokens", f"{path} must be a JSON object {{token: role}}")
    return {str(token): str(value.get("role") if isinstance(value, Mapping) else value) for token, value in raw.items()}
