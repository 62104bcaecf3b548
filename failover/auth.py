"""Bearer tokens and roles of the control API.

Roles and what they may do:

    viewer     read: status, journal, drills
    director   read, plus drain / undrain / steer, plus drills (a drill moves traffic: only a
               director may start one, or ask for its plan)
    chaos      read (game days inject faults in the cells with this role; they start no drill)

Tokens live in a JSON file `{token: role}` (or `{token: {"role": r, "name": n}}` to give a token a
name for the journal); its path comes from `--tokens`, else REGIONCTL_TOKENS_FILE, else
<REGIONCTL_STATE_DIR or var/stack>/tokens.json (`tokens_path(environ)` takes the mapping: the
environment is read by the caller). `regions.tokens.ensure_tokens_file` writes one generated token per role
(mode 0600) when the file does not exist, which is how the local stack gets its tokens.
A token without a name is journaled as `<role>:<role>-<first 8 hex of its SHA-256>`; the token
itself never appears in a message, a log or the journal.
"""
from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Mapping

from contracts.bearer import bearer_token
from regions.errors import InputError
from regions.tokens import ROLES, TOKENS_FILE
from regions.topology import REPO_ROOT

TOKENS_ENV = "REGIONCTL_TOKENS_FILE"
TOKEN_ENV = "REGIONCTL_TOKEN"
STATE_DIR_ENV = "REGIONCTL_STATE_DIR"


class Role(StrEnum):
    VIEWER = "viewer"
    DIRECTOR = "director"
    CHAOS = "chaos"


assert tuple(r.value for r in Role) == ROLES, "regions.tokens.ROLES and Role must name the same roles"


class Permission(StrEnum):
    READ = "read"
    DIRECT = "direct"
    """drain, undrain, steer"""
    DRILL = "drill"


GRANTS: Mapping[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset({Permission.READ}),
    Role.DIRECTOR: frozenset({Permission.READ, Permission.DIRECT, Permission.DRILL}),
    Role.CHAOS: frozenset({Permission.READ}),
}


class Unauthorized(InputError):
    """No token, or a token the file does not list (HTTP 401)."""


class Forbidden(InputError):
    """A known token whose role lacks the permission (HTTP 403)."""


@dataclass(frozen=True)
class Principal:
    role: Role
    name: str

    @property
    def actor(self) -> str:
        """How the journal names this caller: role and token name."""
        return f"{self.role.value}:{self.name}"

    def may(self, permission: Permission) -> bool:
        return permission in GRANTS[self.role]


def _fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()[:8]


def parse_tokens(raw: Any, *, source: str = "tokens") -> dict[str, Principal]:
    """Token -> Principal from the decoded file. Pure; an entry is named by its position, never by the token."""
    if not isinstance(raw, Mapping) or not raw:
        raise InputError(source, 'must be a non-empty JSON object {"<token>": "viewer|director|chaos"}')
    book: dict[str, Principal] = {}
    allowed = ", ".join(r.value for r in Role)
    for position, (token, value) in enumerate(raw.items(), start=1):
        where = f"{source} entry {position}"
        if not isinstance(token, str) or len(token) < 16:
            raise InputError(where, "token must be a string of at least 16 characters")
        role_raw, name = (value.get("role"), value.get("name")) if isinstance(value, Mapping) else (value, None)
        try:
            role = Role(role_raw)
        except ValueError:
            raise InputError(where, f"unknown role {role_raw!r}; allowed: {allowed}") from None
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise InputError(where, "name must be a non-empty string when given")
        book[token] = Principal(role=role, name=name.strip() if name else f"{role.value}-{_fingerprint(token)}")
    return book


class TokenBook:
    """The tokens the control API accepts."""

    def __init__(self, principals: Mapping[str, Principal]) -> None:
        self._principals = dict(principals)

    @classmethod
    def load(cls, path: Path) -> TokenBook:
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise InputError("tokens", f"file {path} does not exist; pass --tokens or set {TOKENS_ENV}") from exc
        except (OSError, ValueError) as exc:
            raise InputError("tokens", f"cannot read {path} as JSON ({exc}); fix it or pass another --tokens") from exc
        return cls(parse_tokens(raw, source=str(path)))

    def authenticate(self, authorization: str | None) -> Principal:
        """The caller of an `Authorization: Bearer <token>` header; Unauthorized otherwise."""
        token = bearer_token(authorization)
        if token is None:
            raise Unauthorized("authorization", "send the header 'Authorization: Bearer <token>' "
                                                "(tokens are in the stack's tokens.json)")
        offered = token.encode("utf-8")
        found = None
        for token, principal in self._principals.items():
            if hmac.compare_digest(token.encode("utf-8"), offered):
                found = principal
        if found is None:
            raise Unauthorized("authorization", "unknown token; use one from the stack's tokens.json")
        return found

    def authorize(self, authorization: str | None, permission: Permission) -> Principal:
        principal = self.authenticate(authorization)
        if not principal.may(permission):
            roles = ", ".join(r.value for r, grants in GRANTS.items() if permission in grants)
            raise Forbidden("authorization", f"role {principal.role.value} may not {permission.value}; "
                                             f"roles that may: {roles}")
        return principal

    def token_for(self, permission: Permission) -> str | None:
        """A token that has `permission`, preferring the least powerful role (for the CLI)."""
        order = (Role.VIEWER, Role.CHAOS, Role.DIRECTOR)
        for role in order:
            for token, principal in self._principals.items():
                if principal.role is role and principal.may(permission):
                    return token
        return None


def tokens_path(environ: Mapping[str, str], explicit: str | Path | None = None) -> Path:
    """--tokens, else REGIONCTL_TOKENS_FILE, else <REGIONCTL_STATE_DIR or var/stack>/tokens.json."""
    if explicit:
        return Path(explicit)
    if environ.get(TOKENS_ENV):
        return Path(environ[TOKENS_ENV])
    state_dir = Path(environ.get(STATE_DIR_ENV) or REPO_ROOT / "var" / "stack")
    return state_dir / TOKENS_FILE


__all__ = ["Role", "TokenBook", "Principal", "parse_tokens", "tokens_path"]
