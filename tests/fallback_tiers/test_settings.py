"""Ladder and breaker settings: defaults, validation, and the REGIONCTL_ environment."""
from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap

import pytest

from fallback_tiers.settings import BreakerSettings, LadderSettings
from fallback_tiers.tiers import Tier
from regions.errors import InputError


def test_defaults_follow_the_issue() -> None:
    settings = LadderSettings()
    assert settings.deadline_s == 0.150
    assert settings.breaker == BreakerSettings(failure_threshold=5, open_duration_s=5.0)
    assert set(settings.stage_budget_s) == set(Tier) == set(settings.min_budget_s)
    # the stages a deadline must be able to fit one after the other after a full-ranking timeout
    after_full = settings.deadline_s - settings.stage_budget_s[Tier.FULL] - settings.floor_reserve_s
    assert after_full >= settings.stage_budget_s[Tier.CACHED] + settings.stage_budget_s[Tier.SEGMENT]


@pytest.mark.parametrize("cls", [LadderSettings, BreakerSettings])
def test_every_default_documents_its_reason(cls: type) -> None:
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body  # type: ignore[attr-defined]
    documented = {
        stmt.target.id for stmt, nxt in zip(body, body[1:])
        if isinstance(stmt, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
        and isinstance(nxt.value.value, str) and nxt.value.value.strip()
    }
    assert documented == {f.name for f in dataclasses.fields(cls)}


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: BreakerSettings(failure_threshold=0), "failure_threshold"),
        (lambda: BreakerSettings(failure_threshold=True), "failure_threshold"),
        (lambda: BreakerSettings(open_duration_s=0), "open_duration_s"),
        (lambda: BreakerSettings(min_failing_s=-0.1), "min_failing_s"),
        (lambda: BreakerSettings(min_failing_s=float("inf")), "min_failing_s"),
        (lambda: LadderSettings(deadline_s=-1), "deadline_s"),
        (lambda: LadderSettings(min_fill_fraction=0), "min_fill_fraction"),
        (lambda: LadderSettings(min_fill_fraction=1.5), "min_fill_fraction"),
        (lambda: LadderSettings(floor_reserve_s=-0.1), "floor_reserve_s"),
        (lambda: LadderSettings(stage_budget_s={Tier.FULL: 0.1}), "stage_budget_s"),
        (lambda: LadderSettings(min_budget_s={**LadderSettings().min_budget_s, Tier.FULL: 0.5}), "min_budget_s[full]"),
        (lambda: LadderSettings(stage_budget_s={**LadderSettings().stage_budget_s, Tier.CACHED: -1.0}),
         "stage_budget_s[cached]"),
    ],
)
def test_invalid_settings_name_the_field(build, field: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError) as info:
        build()
    assert info.value.field == field


def test_from_env_overrides_only_what_is_set() -> None:
    env = {"REGIONCTL_TIER_DEADLINE_MS": "120", "REGIONCTL_BREAKER_FAILURES": "3",
           "REGIONCTL_BREAKER_OPEN_S": "2.5", "REGIONCTL_BREAKER_MIN_FAILING_S": "0", "REGIONCTL_TIER_MIN_FILL": "0.8",
           "OTHER": "x"}
    settings = LadderSettings.from_env(env)
    assert settings.deadline_s == pytest.approx(0.120)
    assert settings.breaker == BreakerSettings(failure_threshold=3, open_duration_s=2.5, min_failing_s=0.0)
    assert settings.min_fill_fraction == 0.8
    assert settings.stage_budget_s == LadderSettings().stage_budget_s
    assert LadderSettings.from_env({}) == LadderSettings()


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("REGIONCTL_TIER_DEADLINE_MS", "fast"),
        ("REGIONCTL_TIER_DEADLINE_MS", "-5"),
        ("REGIONCTL_TIER_MIN_FILL", "2"),
        ("REGIONCTL_BREAKER_FAILURES", "2.5"),
        ("REGIONCTL_BREAKER_FAILURES", "0"),
        ("REGIONCTL_BREAKER_OPEN_S", "nan"),
        ("REGIONCTL_BREAKER_OPEN_S", "0"),
        ("REGIONCTL_BREAKER_MIN_FAILING_S", "-1"),
    ],
)
def test_from_env_errors_name_the_variable(variable: str, raw: str) -> None:
    with pytest.raises(InputError) as info:
        LadderSettings.from_env({variable: raw})
    assert info.value.field == variable
