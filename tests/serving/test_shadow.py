from serving.shadow import Offer, compare, summarize

OFFER = Offer(user_id="us-1", geography="us", count=8, serving_items=tuple(f"i{n}" for n in range(8)), serving_ms=10.0,
              candidate="v2")


def test_comparisons_and_their_summary() -> None:
    same = compare(OFFER, OFFER.serving_items + ("x",), 11.0, tier_ok=True)
    reversed_ = compare(OFFER, tuple(reversed(OFFER.serving_items)), 30.0, tier_ok=True)
    failed = compare(OFFER, None, 0.0, tier_ok=False)
    degraded = compare(OFFER, OFFER.serving_items, 5.0, tier_ok=False)
    assert same.overlap == 1.0 and same.rank_corr == 1.0 and not same.error
    assert reversed_.overlap == 1.0 and reversed_.rank_corr == -1.0
    assert failed.error and degraded.error
    summary = summarize("v2", [same, reversed_, failed, degraded], dropped=2)
    assert summary["compared"] == 4 and summary["errors"] == 2 and summary["error_rate"] == 0.5
    assert summary["rank_corr"] == 0.0 and summary["latency_ratio_p50"] == 2.05 and summary["dropped"] == 2
    assert summarize(None, [], 0) == {"candidate": None, "compared": 0, "errors": 0, "error_rate": 0.0, "dropped": 0}
