"""regions.cas_retry: the one compare-and-swap retry policy."""
from __future__ import annotations

import pytest

from regions.cas_retry import LOST, CasRetry
from regions.errors import InputError, TemporaryError


def _policy(**kw: object) -> tuple[CasRetry, list[float]]:
    waits: list[float] = []
    base = dict(attempts=4, exhausted=lambda n: TemporaryError(f"lost {n} races on k; retry"), sleep=waits.append)
    return CasRetry(**{**base, **kw}), waits  # type: ignore[arg-type]


def test_returns_the_first_won_result_and_retries_only_lost_races() -> None:
    policy, waits = _policy(backoff_s=0.01, multiplier=2.0, max_backoff_s=0.03)
    tries = iter([LOST, LOST, "won", "never"])
    assert policy.run(lambda: next(tries)) == "won"
    assert waits == [0.01, 0.02]  # no wait before the first try, then exponential


def test_gives_up_with_the_policys_error_after_all_attempts() -> None:
    policy, waits = _policy(backoff_s=0.01, max_backoff_s=0.015)
    calls = []
    with pytest.raises(TemporaryError, match="lost 4 races on k"):
        policy.run(lambda: calls.append(1) or LOST)
    assert len(calls) == 4 and waits == [0.01, 0.015, 0.015]


def test_none_and_false_are_results_not_lost_races() -> None:
    policy, _ = _policy()
    assert policy.run(lambda: None) is None
    assert policy.run(lambda: False) is False


def test_errors_from_a_try_propagate_at_once() -> None:
    policy, _ = _policy()
    calls = []

    def boom() -> object:
        calls.append(1)
        raise RuntimeError("store down")

    with pytest.raises(RuntimeError, match="store down"):
        policy.run(boom)
    assert calls == [1]


@pytest.mark.parametrize(("kw", "field"), [({"attempts": 0}, "attempts"), ({"attempts": True}, "attempts"),
                                           ({"backoff_s": -1}, "backoff_s"), ({"multiplier": 0.5}, "multiplier")])
def test_bad_policy_values_name_the_field(kw: dict, field: str) -> None:
    with pytest.raises(InputError, match=field):
        _policy(**kw)
