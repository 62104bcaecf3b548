import pytest

from contracts.bucketing import BUCKETS, arm_of, bucket, in_share
from contracts.serving_plan import ServingPlan, parse_experiment, parse_serving_plan
from regions.errors import InputError

USERS = [f"us-{n}" for n in range(4000)]


def test_bucket_is_stable_and_spread() -> None:
    assert bucket("us-1", "s") == bucket("us-1", "s")
    assert 0 <= bucket("us-1", "s") < BUCKETS
    shares = sum(in_share(u, "r1", 10.0) for u in USERS) / len(USERS)
    assert 0.08 < shares < 0.12


def test_shares_grow_monotonically_and_salts_are_independent() -> None:
    one = {u for u in USERS if in_share(u, "r1", 1.0)}
    ten = {u for u in USERS if in_share(u, "r1", 10.0)}
    assert one <= ten and len(ten) > len(one) > 0
    other = {u for u in USERS if in_share(u, "r2", 10.0)}
    assert len(ten & other) < len(ten) * 0.3
    assert all(in_share(u, "r1", 100.0) for u in USERS[:50]) and not any(in_share(u, "r1", 0.0) for u in USERS[:50])


def test_arms_follow_weights_and_experiment_salt() -> None:
    arms = (("control", 50.0), ("weak", 50.0))
    split = [arm_of(u, "e1", arms) for u in USERS]
    assert 0.45 < split.count("weak") / len(split) < 0.55
    again = [arm_of(u, "e2", arms) for u in USERS]
    assert split != again
    with pytest.raises(InputError, match="weight"):
        arm_of("u", "e", (("a", 0.0), ("b", 1.0)))


def test_serving_plan_round_trip_and_bad_input() -> None:
    exp = parse_experiment({"id": "e1", "arms": [{"name": "control", "weight": 50},
                                                 {"name": "weak", "weight": 50, "bundle_version": "v0",
                                                  "rules": {"max_per_category": 2}, "candidate_count": 40}]})
    plan = ServingPlan(revision=3, rollout_id="us:v2:1", candidate="v2", canary_percent=10.0, experiment=exp)
    assert parse_serving_plan(plan.to_json()) == plan
    assert plan.versions() == ("v2", "v0")
    assert parse_serving_plan(None) == ServingPlan()
    with pytest.raises(InputError, match="canary_percent"):
        parse_serving_plan('{"canary_percent": 120}')
    with pytest.raises(InputError, match=r"arms\[1\].rules"):
        parse_experiment({"id": "e", "arms": [{"name": "a"}, {"name": "b", "rules": {"colour": 1}}]})
    with pytest.raises(InputError, match="distinct"):
        parse_experiment({"id": "e", "arms": [{"name": "a"}, {"name": "a"}]})
    with pytest.raises(InputError, match="candidate_count"):
        parse_experiment({"id": "e", "arms": [{"name": "a"}, {"name": "b", "candidate_count": 0}]})
