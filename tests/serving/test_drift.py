"""Feature drift (serving.drift): PSI per feature against the distribution kept in the bundle.
Clean traffic shows none; the feature updater writing prices 10x is caught on the price features."""
from __future__ import annotations

import json

import numpy as np
import pytest

from regions.errors import InputError
from serving.bundle import LoadedBundle
from serving.drift import PSI_ALERT, drift_report, feature_distribution, psi
from serving.drift_monitor import FeatureSampler, SamplerSettings
from serving.features import LiveItems
from serving.marketplace import SIZES, generate
from serving.training import replay_states, train_bundle
from tests.serving.test_datasets import QUICK


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    data = generate(SIZES["tiny"], seed=11, geographies={"us": 0.7, "eu": 0.3})
    result = train_bundle(data, out_dir=tmp_path_factory.mktemp("drift") / "b", now=2e9, settings=QUICK)
    bundle = LoadedBundle.load(result.bundle_dir)
    cutoff = result.manifest.metrics["cutoff"]
    (states,) = replay_states(data, data.events.before(cutoff), snapshots=(cutoff,))
    stats = json.loads((result.bundle_dir / "feature_stats.json").read_text())

    def score(price_factor: float) -> np.ndarray:
        rows = []
        for n, user in enumerate(data.users[::2]):
            state = states.get(2 * n)
            if state is None:
                continue
            vector = bundle.user_embedding(user.user_id, state)
            cands = bundle.candidates(state=state, user_vector=vector, segment_key=bundle.segment_of(user.attrs()), now=cutoff)
            nan = np.full(len(cands), np.nan)
            live = LiveItems(price=bundle.items.price[cands.rows] * price_factor, stock=nan, rating=nan, popularity=nan)
            rows.append(bundle.features(state=state, user_vector=vector, candidates=cands, now=cutoff, live=live))
        return np.vstack(rows)

    return bundle, stats, score


def test_clean_traffic_shows_no_drift(scored):
    bundle, stats, score = scored
    report = drift_report(stats, score(1.0), bundle.feature_names)
    assert report["verdict"] == "ok", report["drifted"]
    assert report["max_psi"] < PSI_ALERT


def test_prices_written_10x_are_detected_on_the_price_features(scored):
    bundle, stats, score = scored
    report = drift_report(stats, score(10.0), bundle.feature_names)
    assert report["verdict"] == "drift"
    assert {"log_price", "price_change", "price_vs_category"} <= set(report["drifted"])
    assert "emb_dot" not in report["drifted"]
    print(f"\nPSI with prices 10x: log_price {report['psi']['log_price']}, price_change {report['psi']['price_change']}")


def test_psi_is_zero_on_the_same_distribution_and_grows_with_a_shift():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(5000, 1))
    stats = feature_distribution(X, ["x"])
    shares = stats["features"]["x"]["shares"]
    assert psi(shares, shares) == 0.0
    small = drift_report(stats, X + 0.05, ["x"])["psi"]["x"]
    large = drift_report(stats, X + 1.0, ["x"])["psi"]["x"]
    assert small < 0.1 < PSI_ALERT < large
    assert drift_report(stats, X[:50], ["x"])["verdict"] == "too few samples"
    with pytest.raises(InputError):
        drift_report(stats, X, ["x", "y"])
    const = feature_distribution(np.zeros((1000, 1)), ["c"])
    assert drift_report(const, np.ones((1000, 1)), ["c"])["verdict"] == "drift"


def test_the_sampler_keeps_every_nth_request_and_the_newest_rows_and_reads_its_settings_from_the_environment():
    settings = SamplerSettings.from_env({"REGIONCTL_DRIFT_EVERY": "2", "REGIONCTL_DRIFT_ROWS_PER_REQUEST": "3",
                                         "REGIONCTL_DRIFT_CAPACITY": "4"})
    assert (settings.every, settings.rows_per_request, settings.capacity) == (2, 3, 4)
    sampler = FeatureSampler(settings)
    for n in range(6):
        sampler.maybe(lambda n=n: np.full((10, 1), float(n)))
    assert sorted(sampler.sample()[:, 0].tolist()) == [3.0, 5.0, 5.0, 5.0]  # requests 1, 3, 5 sampled; newest 4 rows kept
    for bad, field in (({"REGIONCTL_DRIFT_EVERY": "0"}, "REGIONCTL_DRIFT_EVERY"),
                       ({"REGIONCTL_DRIFT_CAPACITY": "5"}, "REGIONCTL_DRIFT_CAPACITY"),
                       ({"REGIONCTL_DRIFT_EVRY": "1"}, "REGIONCTL_DRIFT_EVRY")):
        with pytest.raises(InputError) as info:
            SamplerSettings.from_env(bad)
        assert info.value.field == field
