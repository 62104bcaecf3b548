"""The one settings loader from the environment: parsing, nesting, and errors naming the variable."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from contracts.environment import EnvVar, calibration_path, load_settings, topology_path
from regions.errors import InputError


@dataclass(frozen=True)
class Inner:
    size: int = 2

    def __post_init__(self) -> None:
        if self.size < 1:
            raise InputError("size", f"must be at least 1, got {self.size}")


@dataclass(frozen=True)
class Demo:
    rate: float = 1.0
    count: int = 3
    name: str = "x"
    on: bool = False
    stages: tuple[int, ...] = (10, 100)
    pairs: tuple[tuple[str, float], ...] = (("a", 1.0),)
    lo: int = 1
    hi: int = 5
    inner: Inner = field(default_factory=Inner)

    def __post_init__(self) -> None:
        if self.lo > self.hi:
            raise InputError("lo", f"must not exceed hi ({self.hi})")


P = "REGIONCTL_DEMO_"


def test_every_type_is_parsed_from_its_field() -> None:
    got = load_settings(Demo(), {P + "RATE": "2.5", P + "COUNT": "7", P + "NAME": "y", P + "ON": "true",
                                 P + "STAGES": "5, 50,100", "UNRELATED": "z"}, prefix=P)
    assert (got.rate, got.count, got.name, got.on, got.stages) == (2.5, 7, "y", True, (5, 50, 100))
    assert load_settings(Demo(), {}, prefix=P) == Demo()


def test_fields_checked_together_change_together() -> None:
    assert (got := load_settings(Demo(), {P + "LO": "8", P + "HI": "9"}, prefix=P)).lo == 8 and got.hi == 9


def test_named_variables_reach_nested_fields_and_convert_units() -> None:
    variables = {"REGIONCTL_X_MS": EnvVar("rate", scale=0.001), "REGIONCTL_SIZE": EnvVar("inner.size")}
    got = load_settings(Demo(), {"REGIONCTL_X_MS": "250", "REGIONCTL_SIZE": "4", "REGIONCTL_OTHER": "1"},
                        prefix="REGIONCTL_", variables=variables, refuse_unknown=False)
    assert (got.rate, got.inner.size) == (0.25, 4)


@pytest.mark.parametrize(("env", "variable", "words"), [
    ({P + "COUNT": "three"}, P + "COUNT", "whole number"),
    ({P + "RATE": "fast"}, P + "RATE", "number"),
    ({P + "RATE": "nan"}, P + "RATE", "finite"),
    ({P + "ON": "maybe"}, P + "ON", "true or false"),
    ({P + "STAGES": "5,x"}, P + "STAGES", "whole number"),
    ({P + "PAIRS": "a"}, P + "PAIRS", "set it in code"),
    ({P + "COLOUR": "red"}, P + "COLOUR", "allowed: REGIONCTL_DEMO_COUNT"),
    ({P + "LO": "9"}, P + "LO", "(lo) must not exceed hi"),
])
def test_errors_name_the_variable(env: dict[str, str], variable: str, words: str) -> None:
    with pytest.raises(InputError) as info:
        load_settings(Demo(), env, prefix=P)
    assert info.value.field == variable and words in info.value.reason


def test_a_nested_validation_error_names_the_variable_that_set_it() -> None:
    with pytest.raises(InputError) as info:
        load_settings(Demo(), {"REGIONCTL_SIZE": "0", P + "COUNT": "2"}, prefix=P,
                      variables={"REGIONCTL_SIZE": EnvVar("inner.size"), P + "COUNT": EnvVar("count")})
    assert info.value.field == "REGIONCTL_SIZE"


def test_file_paths_prefer_the_flag_then_the_variable() -> None:
    env = {"REGIONCTL_TOPOLOGY": "/t.toml", "REGIONCTL_CALIBRATION": "/c.json"}
    assert topology_path(env) == Path("/t.toml") and topology_path(env, "/f.toml") == Path("/f.toml")
    assert topology_path({}) is None and calibration_path(env) == Path("/c.json") and calibration_path({}) is None
