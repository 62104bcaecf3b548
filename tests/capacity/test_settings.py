"""Capacity settings: documented defaults, validation, and REGIONCTL_CAPACITY_* overrides."""
from __future__ import annotations

import ast
import inspect

import pytest

from capacity import settings as settings_module
from capacity.settings import CapacitySettings, FailoverPolicy, InstanceShape, settings_from_env
from regions.errors import InputError


@pytest.mark.parametrize("cls", [InstanceShape, FailoverPolicy, CapacitySettings])
def test_every_default_has_a_reason(cls: type) -> None:
    # Each field's assignment is followed by a docstring line: the house rule for settings.
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body  # type: ignore[attr-defined]
    for i, node in enumerate(body):
        if isinstance(node, ast.AnnAssign):
            follow = body[i + 1]
            assert isinstance(follow, ast.Expr) and isinstance(follow.value, ast.Constant), node.target.id  # type: ignore[attr-defined]
            assert len(follow.value.value.strip()) > 10


def test_price_is_stated_as_an_assumption() -> None:
    assert "ASSUMPTION" in inspect.getsource(settings_module.InstanceShape)
    assert InstanceShape().vcpus == 16 and InstanceShape().hourly_usd == 0.58


def test_environment_overrides() -> None:
    s = settings_from_env({
        "REGIONCTL_CAPACITY_PEAK_QPS": "100000",
        "REGIONCTL_CAPACITY_HOURLY_USD": "0.4",
        "REGIONCTL_CAPACITY_VCPUS": "8",
        "REGIONCTL_CAPACITY_DEGRADED_TIER": "cached",
        "REGIONCTL_TOPOLOGY": "ignored: not ours",
    })
    assert (s.peak_qps, s.instance.hourly_usd, s.instance.vcpus, s.failover.degraded_tier) == (1e5, 0.4, 8, "cached")
    assert s.target_utilisation == CapacitySettings().target_utilisation


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"REGIONCTL_CAPACITY_PEAK_QPS": "lots"}, "REGIONCTL_CAPACITY_PEAK_QPS"),
        ({"REGIONCTL_CAPACITY_VCPUS": "1.5"}, "REGIONCTL_CAPACITY_VCPUS"),
        ({"REGIONCTL_CAPACITY_COLOUR": "red"}, "REGIONCTL_CAPACITY_COLOUR"),
        ({"REGIONCTL_CAPACITY_TARGET_UTILISATION": "1.5"}, "REGIONCTL_CAPACITY_TARGET_UTILISATION"),
        ({"REGIONCTL_CAPACITY_DEGRADED_TIER": "turbo"}, "REGIONCTL_CAPACITY_DEGRADED_TIER"),
        ({"REGIONCTL_CAPACITY_DEGRADED_SHARE": "-0.1"}, "REGIONCTL_CAPACITY_DEGRADED_SHARE"),
        ({"REGIONCTL_CAPACITY_VCPUS": "0"}, "REGIONCTL_CAPACITY_VCPUS"),
    ],
)
def test_bad_environment_names_the_variable(env: dict[str, str], field: str) -> None:
    with pytest.raises(InputError) as err:
        settings_from_env(env)
    assert err.value.field == field
