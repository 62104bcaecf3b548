import pytest

from contracts.serving_plan import ServingPlan, parse_experiment
from regions.errors import InputError
from serving.reranking import RerankRules, rules_from_mapping
from serving.slate_compare import overlap_at, rank_correlation
from serving.traffic_split import route, shadow_due

USERS = [f"us-{n}" for n in range(2000)]
EXP = parse_experiment({"id": "e1", "arms": [{"name": "control", "weight": 50},
                                             {"name": "weak", "weight": 50, "bundle_version": "v0",
                                              "rules": {"max_per_brand": 1}, "candidate_count": 30}]})


def test_canary_share_gets_the_candidate_only_when_held() -> None:
    plan = ServingPlan(rollout_id="r", candidate="v2", canary_percent=20.0)
    routes = [route(plan, u, serving_version="v1", held={"v2"}) for u in USERS]
    canary = [r for r in routes if r.version == "v2"]
    assert 0.15 < len(canary) / len(USERS) < 0.25 and all(r.canary for r in canary)
    unheld = [route(plan, u, serving_version="v1", held=set()) for u in USERS]
    assert all(r.version == "v1" for r in unheld) and any(r.unheld == "v2" for r in unheld)
    assert route(plan, None, serving_version="v1", held={"v2"}).version == "v1"


def test_experiment_arms_name_themselves_and_carry_their_changes() -> None:
    plan = ServingPlan(experiment=EXP)
    routes = {u: route(plan, u, serving_version="v1", held={"v0"}) for u in USERS}
    weak = [r for r in routes.values() if r.arm == "weak"]
    control = [r for r in routes.values() if r.arm == "control"]
    assert weak and control and all(r.experiment == "e1" for r in routes.values())
    assert all(r.version == "v0" and r.candidate_count == 30 and r.rules == {"max_per_brand": 1} for r in weak)
    assert all(r.version == "v1" and not r.rules for r in control)
    # an arm whose bundle the cell does not hold is never answered under its name
    missing = [route(plan, u, serving_version="v1", held=set()) for u in USERS]
    assert not any(r.arm == "weak" for r in missing) and any(r.unheld == "v0" for r in missing)


def test_shadow_is_sampled_off_the_candidate() -> None:
    plan = ServingPlan(candidate="v2", shadow_percent=25.0)
    assert shadow_due(plan, 0.1, held={"v2"}, answered_by="v1", tier="full")
    assert not shadow_due(plan, 0.3, held={"v2"}, answered_by="v1", tier="full")
    assert not shadow_due(plan, 0.1, held={"v2"}, answered_by="v2", tier="full")
    assert not shadow_due(plan, 0.1, held={"v2"}, answered_by="v1", tier="cached")
    assert not shadow_due(plan, 0.1, held=set(), answered_by="v1", tier="full")


def test_slate_comparison() -> None:
    a = [f"i{n}" for n in range(8)]
    assert overlap_at(8, a, a) == 1.0 and rank_correlation(a, a) == pytest.approx(1.0)
    assert rank_correlation(a, list(reversed(a))) == pytest.approx(-1.0)
    assert overlap_at(8, a, [f"j{n}" for n in range(8)]) == 0.0
    assert rank_correlation(a, [f"j{n}" for n in range(40)]) == 0.0  # none of a's items: no agreement
    assert 0 < rank_correlation(a, a[:4] + ["x"] * 4) < 1


def test_rules_are_configurable_and_checked() -> None:
    rules = rules_from_mapping({"max_per_category": 2, "pins": {"i1": 0}, "brand_boosts": {"brand-1": 2.0}})
    assert rules.max_per_category == 2 and rules.pins == {"i1": 0} and rules.max_per_brand == RerankRules().max_per_brand
    assert RerankRules().with_overrides({"max_per_brand": 1}).max_per_brand == 1
    with pytest.raises(InputError, match="rules.max_per_category"):
        rules_from_mapping({"max_per_category": 0})
    with pytest.raises(InputError, match="rules.colour"):
        rules_from_mapping({"colour": "red"})
