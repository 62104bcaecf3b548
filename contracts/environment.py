"""The environment, read one way: settings from `REGIONCTL_*` variables, and the default file paths.

Only process entry points (regionctl's commands, the cell and worker mains) pass `os.environ`;
everything below them takes the mapping (or a path) as an argument.

`load_settings(base, environ, prefix=...)` applies variables to a frozen settings dataclass:

    * by default every field `f` of `base` is the variable `<prefix><F>`; `variables` names them
      explicitly instead (dotted paths reach nested settings: "instance.hourly_usd", and `scale`
      converts units: milliseconds in the variable, seconds in the field);
    * a value is parsed by the type of the field's current value: int, float (finite), bool
      (true/false/1/0/yes/no), str, or a tuple of numbers (comma-separated);
    * with `refuse_unknown`, a variable with the prefix that names no setting is refused;
    * every error, including the settings' own validation, is an InputError naming the variable
      the operator set (and the field, in the message). Nothing changes on error: a new value is built.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Mapping, TypeVar

from regions.errors import InputError

PREFIX = "REGIONCTL_"
TOPOLOGY_ENV = "REGIONCTL_TOPOLOGY"
CALIBRATION_ENV = "REGIONCTL_CALIBRATION"
RETENTION_KEY_ENV = "REGIONCTL_RETENTION_KEY"
"""The retention key: pseudonymises archived events (replication.retention) and finds a deleted
user's archive entries again (replication.deletion)."""

_S = TypeVar("_S")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


@dataclass(frozen=True)
class EnvVar:
    """Where one variable goes: a (dotted) field path, and a factor applied to numbers."""

    path: str
    scale: float = 1.0


def _get(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def _apply(obj: Any, values: Mapping[str, Any]) -> Any:
    """One `replace` per (nested) dataclass, so that fields checked together change together."""
    direct: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for path, value in values.items():
        head, _, rest = path.partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            direct[head] = value
    for head, inner in nested.items():
        direct[head] = _apply(getattr(obj, head), inner)
    return replace(obj, **direct)


def _number(variable: str, raw: str, kind: type, scale: float) -> float | int:
    try:
        value = kind(raw.strip())
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise InputError(variable, f"must be {what}, got {raw!r}") from None
    if kind is float and not math.isfinite(value):
        raise InputError(variable, f"must be a finite number, got {raw!r}")
    return value * scale if scale != 1.0 else value


def parse_value(variable: str, raw: str, current: Any, *, scale: float = 1.0) -> Any:
    """`raw` parsed as the type of `current`; InputError naming `variable` when it is not one."""
    if isinstance(current, bool):
        if raw.strip().lower() in _TRUE:
            return True
        if raw.strip().lower() in _FALSE:
            return False
        raise InputError(variable, f"must be true or false, got {raw!r}")
    if isinstance(current, int):
        return _number(variable, raw, int, scale)
    if isinstance(current, float):
        return _number(variable, raw, float, scale)
    if isinstance(current, str):
        return raw
    if isinstance(current, tuple) and not any(isinstance(c, (tuple, Mapping)) or is_dataclass(c) for c in current):
        kind = type(current[0]) if current else float
        return tuple(_number(variable, part, kind, scale) for part in raw.split(",") if part.strip())
    raise InputError(variable, "cannot be set from the environment; set it in code")


def default_variables(base: Any, prefix: str) -> dict[str, EnvVar]:
    """`<prefix><FIELD>` for every field of the dataclass `base`."""
    return {prefix + f.name.upper(): EnvVar(f.name) for f in fields(base)}


def load_settings(base: _S, environ: Mapping[str, str], *, prefix: str, what: str = "setting",
                  variables: Mapping[str, EnvVar] | None = None, refuse_unknown: bool = True) -> _S:
    """`base` with the variables of `environ` applied (see the module docstring)."""
    known = dict(variables) if variables is not None else default_variables(base, prefix)
    present = sorted(k for k in environ if k in known or (refuse_unknown and k.startswith(prefix)))
    for variable in present:
        if variable not in known:
            raise InputError(variable, f"unknown {what}; allowed: {', '.join(sorted(known))}")
    changes = {v: parse_value(v, environ[v], _get(base, known[v].path), scale=known[v].scale) for v in present}
    if not changes:
        return base
    try:
        return _apply(base, {known[v].path: value for v, value in changes.items()})
    except InputError as exc:
        blamed = [v for v in changes if known[v].path.rsplit(".", 1)[-1] == exc.field] or list(changes)
        raise InputError(", ".join(blamed), f"({exc.field}) {exc.reason}") from exc


def topology_path(environ: Mapping[str, str], explicit: str | Path | None = None) -> Path | None:
    """--topology, else REGIONCTL_TOPOLOGY, else None (regions.topology's default file)."""
    if explicit:
        return Path(explicit)
    return Path(environ[TOPOLOGY_ENV]) if environ.get(TOPOLOGY_ENV) else None


def calibration_path(environ: Mapping[str, str], explicit: str | Path | None = None) -> Path | None:
    """--calibration, else REGIONCTL_CALIBRATION, else None (capacity.calibration's default file)."""
    if explicit:
        return Path(explicit)
    return Path(environ[CALIBRATION_ENV]) if environ.get(CALIBRATION_ENV) else None


def retention_key(environ: Mapping[str, str]) -> bytes | None:
    """REGIONCTL_RETENTION_KEY as bytes, else None (no key: pseudonymise refused, archive reported as remaining)."""
    return environ.get(RETENTION_KEY_ENV, "").encode() or None
