"""Offline training: events -> a bundle directory + manifest.json, with its offline evaluation.

Time-based split of the data set's period [start, end):

    [start ............ t1) [t1 ....... cutoff) [cutoff ........ end)
     history for ranker     ranker labels        evaluation (never trained on)
     ------------ history for the shipped bundle --------

1. replay every event through serving.user_state.apply_event (the nearline updater's function),
   keeping each user's state as of t1 and as of cutoff, and each user's seen set
   (serving.seen_items) as of both;
   ALS settings are chosen on [t1, cutoff) among TrainSettings.als_grid (serving.als_selection);
2. stage A (as of t1): ALS embeddings, FAISS index, popularity, segments, co-purchase from events
   before t1, written as a bundle without ranker and loaded with LoadedBundle; candidates and
   features (serving.features via the loaded bundle) for users active in [t1, cutoff), labelled
   by their strongest interaction there -> LightGBM lambdarank;
3. stage B (as of cutoff): the same artifacts from all events before cutoff + that ranker = the
   shipped bundle; golden.json records one request and its scores;
4. the written bundle is loaded back and evaluated on [cutoff, end) against the segment lists and
   global popularity, for all, warm and cold users, every method showing only what the adapter's
   seen-items policy allows (also written: seen_policy.json; feature_stats.json, the scored
   features' distribution for drift checks); metrics go into manifest.json (data_watermark =
   newest event used).

The shipped bundle is exactly the evaluated one (it has not seen the evaluation period).
"""
from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import scipy.sparse as sp

from regions.errors import InputError
from contracts.events import EVENT_TYPES, EVENT_WEIGHTS
from replication.manifest import Manifest, build_manifest, new_bundle_version, write_manifest
from serving import indexing
from serving.bundle import CandidateSettings, LoadedBundle, segment_keys
from serving.embeddings import AlsSettings, fit_als, interaction_matrix
from serving.evaluation import COHORTS, MethodMetrics, evaluate, ratio, relevance_by_user
from serving.als_selection import select_als
from serving.drift import feature_distribution
from serving.seen_items import SeenPolicies, excluded, seen_sets
from serving.time_constants import FILE as TIME_CONSTANTS_FILE, TimeConstants
from serving.features import SCHEMA_VERSION, Candidates, schema_document
from serving.marketplace import KIND_CODE, Dataset, EventTable
from serving.user_state import AFFINITY_HALF_LIFE_S, UserState, apply_event

Progress = Callable[[str], None]
_KIND_WEIGHT = np.array([EVENT_WEIGHTS[t] for t in EVENT_TYPES])
_LABEL = {1.0: 1, 3.0: 2, 5.0: 3}
"""Strongest interaction -> lambdarank label: view 1, cart 2, purchase 3."""


@dataclass(frozen=True)
class TrainSettings:
    """Training settings; each default carries its reason."""

    als: AlsSettings = field(default_factory=AlsSettings)
    """Embedding hyper-parameters (serving.embeddings)."""
    index: indexing.IndexSettings = field(default_factory=indexing.IndexSettings)
    """Index choice by size (serving.indexing)."""
    candidates: CandidateSettings = field(default_factory=CandidateSettings)
    """The same candidate sources as serving uses."""
    test_fraction: float = 0.2
    """The last fifth of the period is held out for evaluation."""
    label_fraction: float = 0.25
    """The quarter before it labels the ranker's training lists (and validates ALS)."""
    time_constants: TimeConstants = field(default_factory=TimeConstants)
    """Interest fade, popularity half-life, segment list length: the data set's (serving.time_constants)."""
    trees: int = 100
    """Enough boosting rounds for ~50 features at learning rate 0.1 (more did not help on demo data)."""
    learning_rate: float = 0.1
    """With 100 rounds: converged on the demo data, still smooth."""
    num_leaves: int = 15
    """Small trees: the lists are short and the signal is in a few strong features; half the cost of 31."""
    num_threads: int = 1
    """LightGBM with 2 threads on 2 busy shared cores was 3x slower than with 1 (measured)."""
    negatives_per_list: int = 40
    """Unlabelled candidates kept per list (all positives are kept): 5x fewer rows, same ranking signal."""
    hard_negative_share: float = 0.0
    """Share of the kept negatives taken as hard negatives (the unlabelled candidates with the best
    ANN rank), the rest drawn at random. Off: measured, half hard negatives cut NDCG@10 / popularity
    from 5.21x to 3.28x on the synthetic demo and from 1.64x to 1.39x on a 700-household
    completejourney slice (the best-ranked unlabelled candidates are mostly items the user simply
    did not get to in the label window, i.e. false negatives)."""
    als_grid: tuple[AlsSettings, ...] = (
        AlsSettings(factors=32, regularization=0.05), AlsSettings(factors=64, regularization=0.05),
        AlsSettings(factors=32, regularization=1.0), AlsSettings(factors=64, regularization=1.0, iterations=20),
    )
    """ALS settings tried on the validation split (history before t1, truth in [t1, cutoff)); the one
    with the best ANN recall@100 trains the shipped bundle. Empty: use `als` as is."""
    max_validation_users: int = 600
    """Users scored per ALS candidate: enough to rank four settings, a second each."""
    copurchase_top: int = 20
    """Bought-together partners kept per item."""
    popularity_top: int = 1000
    """Length of popularity.json (the last-resort tier and candidate source)."""
    max_ranker_users: int = 3000
    """Caps the ranker's training lists: bounded training time at every size."""
    max_eval_users: int = 3000
    """Caps evaluated users: bounded time, still tight confidence on the means."""
    feature_sample: int = 20000
    """Scored feature vectors kept for the training distribution (feature_stats.json, drift checks)."""
    seed: int = 7
    """Deterministic sampling and LightGBM."""


@dataclass(frozen=True)
class TrainResult:
    bundle_dir: Path
    manifest: Manifest
    methods: Mapping[str, MethodMetrics]
    ndcg_ratio: float
    """NDCG@10 of the full pipeline / NDCG@10 of global popularity."""
    seconds: float
    steps: Mapping[str, float]
    cohorts: Mapping[str, Mapping[str, MethodMetrics]] = field(default_factory=dict)
    """'all', 'warm' and 'cold' users -> method -> metrics."""


def replay_states(dataset: Dataset, table: EventTable, *, snapshots: tuple[float, ...],
                  interest_half_life_s: float = AFFINITY_HALF_LIFE_S) -> list[dict[int, UserState]]:
    """Each user's state as of each snapshot time (events with ts < snapshot), by apply_event."""
    category = {i.item_id: i.category for i in dataset.items}
    item_ids = [i.item_id for i in dataset.items]
    states: dict[int, UserState] = {}
    out: list[dict[int, UserState]] = []
    pending = sorted(snapshots)
    users, items, kinds, ts, prices = (table.user.tolist(), table.item.tolist(), table.kind.tolist(),
                                       table.ts.tolist(), table.price.tolist())
    for n in range(len(ts)):
        while pending and ts[n] >= pending[0]:
            out.append(dict(states))
            pending.pop(0)
        u = users[n]
        states[u] = apply_event(states.get(u, UserState()), event_type=EVENT_TYPES[kinds[n]], item_id=item_ids[items[n]],
                                ts=ts[n], category_of=category.get, price=prices[n], half_life_s=interest_half_life_s)
    out.extend(dict(states) for _ in pending)
    return out


def effective_created_at(dataset: Dataset) -> np.ndarray:
    """Each item's created_at, moved back to its first event when an event is older: such items
    would otherwise lose those events in training (the count is in the manifest metrics)."""
    created = np.array([i.created_at for i in dataset.items], dtype=np.float64)
    first = np.full(len(created), np.inf)
    np.minimum.at(first, dataset.events.item, dataset.events.ts)
    return np.minimum(created, first)


def items_created_after_events(dataset: Dataset) -> tuple[int, int]:
    """(items whose created_at is later than one of their events, events older than their item)."""
    created = np.array([i.created_at for i in dataset.items], dtype=np.float64)
    early = dataset.events.ts < created[dataset.events.item]
    return int(len(np.unique(dataset.events.item[early]))), int(early.sum())


def _top_sparse_rows(matrix: sp.csr_matrix, k: int) -> list[np.ndarray]:
    out = []
    for r in range(matrix.shape[0]):
        lo, hi = matrix.indptr[r], matrix.indptr[r + 1]
        cols, vals = matrix.indices[lo:hi], matrix.data[lo:hi]
        order = np.lexsort((cols, -vals))[:k]
        out.append(cols[order])
    return out


def stage_matrix(dataset: Dataset, *, as_of: float) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """(users x items interaction matrix before `as_of`, dataset rows of its items, dataset index of its users)."""
    ds_rows = np.flatnonzero(effective_created_at(dataset) <= as_of)
    row_of = np.full(len(dataset.items), -1, dtype=np.int64)
    row_of[ds_rows] = np.arange(len(ds_rows))
    ev = dataset.events.before(as_of)
    ev = ev.select(row_of[ev.item] >= 0)
    positive = _KIND_WEIGHT[ev.kind] > 0
    active = np.unique(ev.user[positive])
    user_row = np.full(len(dataset.users), -1, dtype=np.int64)
    user_row[active] = np.arange(len(active))
    matrix = interaction_matrix(users=user_row[ev.user[positive]], items=row_of[ev.item[positive]], kinds=ev.kind[positive],
                                n_users=len(active), n_items=len(ds_rows))
    return matrix, ds_rows, active


def write_stage(dataset: Dataset, *, as_of: float, out_dir: Path, settings: TrainSettings,
                als: AlsSettings | None = None) -> dict[str, Any]:
    """Every bundle file except ranker.txt, golden.json, seen_policy.json and feature_stats.json,
    from the events before `as_of`."""
    created = effective_created_at(dataset)
    in_catalog = created <= as_of
    ds_rows = np.flatnonzero(in_catalog)
    row_of = np.full(len(dataset.items), -1, dtype=np.int64)
    row_of[ds_rows] = np.arange(len(ds_rows))
    ev = dataset.events.before(as_of)
    ev = ev.select(row_of[ev.item] >= 0)
    rows, n_items = row_of[ev.item], len(ds_rows)
    weight = _KIND_WEIGHT[ev.kind]
    decay = np.power(0.5, (as_of - ev.ts) / (settings.time_constants.popularity_half_life_days * 86400.0))
    popularity = np.bincount(rows, weights=weight * decay, minlength=n_items)
    count = {k: np.bincount(rows[ev.kind == KIND_CODE[k]], minlength=n_items) for k in ("view", "cart", "purchase")}
    bought = ev.kind == KIND_CODE["purchase"]
    buyers = np.bincount(np.unique(np.stack([rows[bought], ev.user[bought]]), axis=1)[0], minlength=n_items)
    prices = dataset.prices_at(as_of)

    matrix, _, active = stage_matrix(dataset, as_of=as_of)
    user_vecs, item_vecs = fit_als(matrix, als or settings.als)
    index = indexing.build_index(item_vecs, settings=settings.index)

    def top_ids(scores: np.ndarray, k: int) -> list[str]:
        order = np.lexsort((np.arange(len(scores)), -scores))[:k]
        return [dataset.items[int(ds_rows[r])].item_id for r in order if scores[r] > 0]

    seg_of_user = [segment_keys(u.attrs()) for u in dataset.users]
    segments: dict[str, list[str]] = {}
    for level in range(max(len(ks) for ks in seg_of_user)):  # most specific key, geography, 'all'
        level_keys = [ks[level] if level < len(ks) else "" for ks in seg_of_user]
        names = sorted(set(level_keys) - {""})
        code = {k: n for n, k in enumerate(names)}
        user_code = np.array([code.get(k, -1) for k in level_keys], dtype=np.int64)
        ev_code = user_code[ev.user]
        for key in names:
            mask = ev_code == code[key]
            segments[key] = top_ids(np.bincount(rows[mask], weights=(weight * decay)[mask], minlength=n_items), settings.time_constants.segment_list_length)

    basket = (ev.kind == KIND_CODE["cart"]) | bought
    sess = np.unique(ev.session[basket], return_inverse=True)[1]
    S = sp.csr_matrix((np.ones(int(basket.sum()), np.float32), (sess, rows[basket])),
                      shape=(int(sess.max(initial=-1)) + 1, n_items))
    S.data[:] = 1.0
    S.sum_duplicates()
    S.data[:] = 1.0
    co = (S.T @ S).tocsr()
    co.setdiag(0)
    co.eliminate_zeros()
    norm = np.sqrt(np.maximum(np.asarray(S.sum(axis=0)).ravel(), 1.0))
    co = sp.diags(1.0 / norm) @ co @ sp.diags(1.0 / norm)
    co = co.tocsr()
    ids = [dataset.items[int(r)].item_id for r in ds_rows]
    copurchase = {ids[r]: [ids[int(c)] for c in cols] for r, cols in enumerate(_top_sparse_rows(co, settings.copurchase_top)) if len(cols)}

    items_json = []
    for r, d in enumerate(ds_rows):
        it = dataset.items[int(d)]
        items_json.append({
            "item_id": it.item_id, "category": it.category, "parent_category": it.parent_category, "brand": it.brand,
            "price": round(float(prices[d]), 4), "stock": it.stock, "rating": it.rating, "created_at": it.created_at,
            "popularity": round(float(popularity[r]), 6), "views": int(count["view"][r]), "carts": int(count["cart"][r]),
            "purchases": int(count["purchase"][r]), "buyers": int(buyers[r]),
        })
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "items.json").write_text(json.dumps(items_json))
    np.save(out_dir / "item_embeddings.npy", item_vecs)
    users_json = [{"user_id": dataset.users[int(u)].user_id, "segment": seg_of_user[int(u)][0]} for u in active]
    (out_dir / "users.json").write_text(json.dumps(users_json))
    np.save(out_dir / "user_embeddings.npy", user_vecs)
    indexing.write_index(index, out_dir / "faiss.index")
    (out_dir / "feature_schema.json").write_text(json.dumps(schema_document(), indent=1))
    (out_dir / "segments.json").write_text(json.dumps(segments))
    (out_dir / TIME_CONSTANTS_FILE).write_text(settings.time_constants.dumps())
    (out_dir / "popularity.json").write_text(json.dumps(top_ids(popularity, settings.popularity_top)))
    (out_dir / "copurchase.json").write_text(json.dumps(copurchase))
    return {"watermark": float(ev.ts.max()) if len(ev) else as_of, "index_kind": indexing.choose_kind(n_items, settings.index),
            "n_items": n_items, "n_users": int(len(active)), "events": len(ev)}


def _truth(dataset: Dataset, table: EventTable) -> dict[str, dict[str, float]]:
    w = _KIND_WEIGHT[table.kind]
    return relevance_by_user(
        (dataset.users[int(u)].user_id, dataset.items[int(i)].item_id, float(x))
        for u, i, x in zip(table.user, table.item, w) if x > 0
    )


def _sample_users(users: list[str], limit: int, seed: int) -> list[str]:
    users = sorted(users)
    if len(users) <= limit:
        return users
    picked = np.random.default_rng(seed).choice(len(users), size=limit, replace=False)
    return [users[int(i)] for i in sorted(picked)]


def _allowed(bundle: LoadedBundle, cands: Candidates, banned: frozenset[str]) -> Candidates:
    """The candidates the seen-items policy lets the surface show (the cell drops the same ones)."""
    if not banned:
        return cands
    keep = np.array([bundle.items.ids[int(r)] not in banned for r in cands.rows], dtype=bool)
    return Candidates(rows=cands.rows[keep], ann_rank=cands.ann_rank[keep], ann_score=cands.ann_score[keep],
                      sources=cands.sources[keep])


def _parent_lookup(dataset: Dataset) -> Callable[[str], str | None]:
    return {i.item_id: i.parent_category for i in dataset.items}.get


def _banned(seen: Mapping[int, Mapping[str, float]], user: int, *, now: float, policies: SeenPolicies,
            parent_of: Callable[[str], str | None]) -> frozenset[str]:
    return excluded(seen.get(user, {}), now=now, policy=policies.home, parent_of=parent_of)


def train_ranker(bundle: LoadedBundle, *, dataset: Dataset, states: Mapping[int, UserState],
                 labels: Mapping[str, Mapping[str, float]], now: float, settings: TrainSettings,
                 progress: Progress, seen: Mapping[int, Mapping[str, float]] | None = None,
                 policies: SeenPolicies = SeenPolicies()) -> Any:
    parent_of = _parent_lookup(dataset)
    """LightGBM lambdarank on the candidate lists of the labelled users, features by the bundle.
    Lists hold what the home surface may show (seen-items policy applied); of the kept negatives,
    `hard_negative_share` are the best-ranked unlabelled ANN candidates, the rest random."""
    import lightgbm

    index_of = {u.user_id: n for n, u in enumerate(dataset.users)}
    blocks, ys, groups = [], [], []
    users = _sample_users(list(labels), settings.max_ranker_users, settings.seed)
    rng = np.random.default_rng(settings.seed)
    for n, user_id in enumerate(users):
        user = dataset.users[index_of[user_id]]
        state = states.get(index_of[user_id], UserState())
        vector = bundle.user_embedding(user_id, state)
        cands = bundle.candidates(state=state, user_vector=vector, segment_key=bundle.segment_of(user.attrs()), now=now)
        cands = _allowed(bundle, cands, _banned(seen or {}, index_of[user_id], now=now, policies=policies, parent_of=parent_of))
        y = np.array([_LABEL.get(labels[user_id].get(bundle.items.ids[int(r)], 0.0), 0) for r in cands.rows])
        if y.max(initial=0) == 0 or y.min() > 0:
            continue
        keep = np.flatnonzero(y > 0)
        negatives = np.flatnonzero(y == 0)
        if len(negatives) > settings.negatives_per_list:
            n_hard = int(settings.negatives_per_list * settings.hard_negative_share)
            hard = negatives[np.argsort(cands.ann_rank[negatives], kind="stable")[:n_hard]]
            rest = np.setdiff1d(negatives, hard)
            easy = rng.choice(rest, size=settings.negatives_per_list - len(hard), replace=False)
            negatives = np.sort(np.concatenate([hard, easy]))
        keep = np.sort(np.concatenate([keep, negatives]))
        X_user = bundle.features(state=state, user_vector=vector, candidates=cands, now=now)
        blocks.append(X_user[keep])
        ys.append(y[keep])
        groups.append(len(keep))
        if (n + 1) % 1000 == 0:
            progress(f"ranker lists: {n + 1}/{len(users)} users")
    if not groups:
        raise InputError("data", "no user has a later interaction among their candidates; use a larger size or period")
    X, y = np.vstack(blocks), np.concatenate(ys)
    progress(f"LightGBM lambdarank: {len(groups)} lists, {X.shape[0]} rows, {X.shape[1]} features")
    params = {"objective": "lambdarank", "metric": "ndcg", "eval_at": [10], "learning_rate": settings.learning_rate,
              "num_leaves": settings.num_leaves, "min_data_in_leaf": 50, "max_bin": 63, "feature_fraction": 0.9,
              "num_threads": settings.num_threads, "seed": settings.seed, "deterministic": True, "verbose": -1}
    data = lightgbm.Dataset(X, label=y, group=groups, feature_name=list(bundle.feature_names))
    return lightgbm.train(params, data, num_boost_round=settings.trees)


METHODS = ("full pipeline", "ALS retrieval only", "segment lists", "popularity")
RECALL_STAGE = {
    "full pipeline": "the ranked top 100 of the candidates (ranker output)",
    "ALS retrieval only": "the ANN retrieval's top 100 (stage 1 alone)",
    "segment lists": "the segment list's top 100",
    "popularity": "the popularity list's top 100",
}
"""Which list each method's recall@100 is measured on; candidate_recall is the candidate set's."""


@dataclass(frozen=True)
class Evaluation:
    methods: Mapping[str, MethodMetrics]
    cohorts: Mapping[str, Mapping[str, MethodMetrics]]
    """cohort ('warm': has an embedding, i.e. interacted before the cutoff; 'cold': not) -> method -> metrics."""
    candidate_recall: float
    features: np.ndarray
    """A sample of the scored feature vectors (the training distribution for drift checks)."""
    top10: Mapping[str, Mapping[str, Sequence[str]]] = field(default_factory=dict)
    """method -> user -> the 10 items shown."""


def evaluate_bundle(bundle: LoadedBundle, *, dataset: Dataset, states: Mapping[int, UserState],
                    truth: Mapping[str, Mapping[str, float]], now: float, settings: TrainSettings,
                    progress: Progress, seen: Mapping[int, Mapping[str, float]] | None = None,
                    policies: SeenPolicies = SeenPolicies()) -> Evaluation:
    parent_of = _parent_lookup(dataset)
    """Metrics per method (all users and per cohort) on the users of `truth`; every method shows
    only what the home surface's seen-items policy allows, as the cell does."""
    index_of = {u.user_id: n for n, u in enumerate(dataset.users)}
    users = _sample_users(list(truth), settings.max_eval_users, settings.seed + 1)
    truth = {u: truth[u] for u in users}
    lists: dict[str, tuple[dict[str, list[str]], dict[str, list[str]]]] = {m: ({}, {}) for m in METHODS}
    cand_recall = []
    pop_all = bundle.item_ids(bundle.popularity)
    requests = []
    for n, user_id in enumerate(users):
        user = dataset.users[index_of[user_id]]
        state = states.get(index_of[user_id], UserState())
        banned = _banned(seen or {}, index_of[user_id], now=now, policies=policies, parent_of=parent_of)
        vector = bundle.user_embedding(user_id, state)
        segment = bundle.segment_of(user.attrs())
        cands = _allowed(bundle, bundle.candidates(state=state, user_vector=vector, segment_key=segment, now=now), banned)
        requests.append((cands, bundle.features(state=state, user_vector=vector, candidates=cands, now=now)))
        ann = bundle.item_ids(bundle.ann_candidates(vector, 100 + min(len(banned), 400))[0]) if vector is not None else []
        ann = [i for i in ann if i not in banned][:100]
        lists["ALS retrieval only"][0][user_id], lists["ALS retrieval only"][1][user_id] = ann[:10], ann
        seg = [i for i in bundle.item_ids(bundle.segment_list(segment)) if i not in banned][:100]
        lists["segment lists"][0][user_id], lists["segment lists"][1][user_id] = seg[:10], seg
        pop = [i for i in pop_all if i not in banned][:100]
        lists["popularity"][0][user_id], lists["popularity"][1][user_id] = pop[:10], pop
        relevant = truth[user_id]
        cand_recall.append(sum(1 for i in bundle.item_ids(cands.rows) if i in relevant) / len(relevant))
        if (n + 1) % 1000 == 0:
            progress(f"evaluation: {n + 1}/{len(users)} users")
    # One predict call for all users: the same booster over the same rows as bundle.rank, batched.
    X_all = np.vstack([X for _, X in requests]) if requests else np.zeros((0, len(bundle.feature_names)), np.float32)
    all_scores = bundle.ranker.predict(X_all, num_threads=settings.num_threads) if len(X_all) else np.zeros(0)
    bounds = np.cumsum([0] + [len(c) for c, _ in requests])
    for n, user_id in enumerate(users):
        cands = requests[n][0]
        scores = all_scores[bounds[n]:bounds[n + 1]]
        ranked = bundle.item_ids(cands.rows[np.argsort(-scores, kind="stable")][:100])
        lists["full pipeline"][0][user_id], lists["full pipeline"][1][user_id] = ranked[:10], ranked
    warm = {u for u in users if u in bundle.user_row}
    cohorts = {"all": set(users), "warm": warm, "cold": set(users) - warm}
    by_cohort = {c: {m: evaluate(top10=t10, top100=t100, truth={u: truth[u] for u in members}, n_items=len(bundle.items))
                     for m, (t10, t100) in lists.items()} for c, members in cohorts.items()}
    rng = np.random.default_rng(settings.seed + 2)
    sample = X_all[np.sort(rng.choice(len(X_all), size=min(settings.feature_sample, len(X_all)), replace=False))] if len(X_all) else X_all
    return Evaluation(methods=by_cohort["all"], cohorts={c: by_cohort[c] for c in COHORTS},
                      candidate_recall=float(np.mean(cand_recall)) if cand_recall else 0.0, features=sample,
                      top10={m: t10 for m, (t10, _) in lists.items()})


def train_bundle(dataset: Dataset, *, out_dir: Path, now: float, settings: TrainSettings = TrainSettings(),
                 bundle_version: str | None = None, progress: Progress = lambda _msg: None,
                 clock: Callable[[], float] = time.perf_counter,
                 seen_policy: SeenPolicies = SeenPolicies()) -> TrainResult:
    """Train, write `out_dir` (must be absent or empty) with manifest.json, evaluate. `now` stamps the
    bundle; `bundle_version` defaults to replication.manifest.new_bundle_version(now); `seen_policy`
    (the data set adapter's) is applied offline and shipped in seen_policy.json for the cells."""
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise InputError("out", f"{out_dir} already holds files; pass an empty or new directory")
    if not (0 < settings.test_fraction and 0 < settings.label_fraction and settings.test_fraction + settings.label_fraction < 1):
        raise InputError("settings", "test_fraction and label_fraction must be > 0 and sum to less than 1")
    began = clock()
    steps: dict[str, float] = {}

    def step(name: str, t0: float) -> float:
        steps[name] = round(clock() - t0, 3)
        progress(f"{name}: {steps[name]:.1f}s")
        return clock()

    span = dataset.end - dataset.start
    cutoff = dataset.start + span * (1 - settings.test_fraction)
    t1 = cutoff - span * settings.label_fraction
    late_items, early_events = items_created_after_events(dataset)
    if late_items:
        progress(f"{late_items} items have {early_events} events older than their created_at: created_at moved back to the first event")
    t = clock()
    states_t1, states_cut = replay_states(dataset, dataset.events.before(cutoff), snapshots=(t1, cutoff),
                                          interest_half_life_s=settings.time_constants.interest_half_life_s)
    item_ids = [i.item_id for i in dataset.items]
    seen_of = {}
    for name, as_of in (("t1", t1), ("cutoff", cutoff)):
        ev = dataset.events.before(as_of)
        seen_of[name] = seen_sets(users=ev.user, items=ev.item, kinds=ev.kind, ts=ev.ts, item_ids=item_ids, policies=seen_policy)
    t = step("replay user states and seen sets", t)
    labels = _truth(dataset, dataset.events.between(t1, cutoff))
    als, als_trials = settings.als, []
    if settings.als_grid:
        als, als_trials = select_als(dataset, as_of=t1, truth=labels, grid=settings.als_grid, seen=seen_of["t1"],
                                     policy=seen_policy.home, max_users=settings.max_validation_users, seed=settings.seed)
        t = step(f"ALS selection on the validation split ({len(als_trials)} settings; chose factors={als.factors} "
                 f"regularization={als.regularization} iterations={als.iterations})", t)
    with tempfile.TemporaryDirectory(prefix="stage-a-") as tmp:
        write_stage(dataset, as_of=t1, out_dir=Path(tmp), settings=settings, als=als)
        stage_a = LoadedBundle.load(Path(tmp), require_ranker=False, version="stage-a", settings=settings.candidates)
        t = step("stage A artifacts (ALS, index, lists as of t1)", t)
        ranker = train_ranker(stage_a, dataset=dataset, states=states_t1, labels=labels, now=t1, settings=settings,
                              progress=progress, seen=seen_of["t1"], policies=seen_policy)
    t = step("ranker (features + LightGBM)", t)
    info = write_stage(dataset, as_of=cutoff, out_dir=out_dir, settings=settings, als=als)
    ranker.save_model(str(out_dir / "ranker.txt"))
    (out_dir / "seen_policy.json").write_text(seen_policy.dumps())
    t = step("bundle artifacts (ALS, index, lists as of cutoff)", t)
    bundle = LoadedBundle.load(out_dir, version="evaluated", settings=settings.candidates)
    truth = _truth(dataset, dataset.events.between(cutoff, dataset.end))
    ev_result = evaluate_bundle(bundle, dataset=dataset, states=states_cut, truth=truth, now=cutoff, settings=settings,
                                progress=progress, seen=seen_of["cutoff"], policies=seen_policy)
    methods = ev_result.methods
    (out_dir / "feature_stats.json").write_text(json.dumps(feature_distribution(ev_result.features, bundle.feature_names)))
    t = step("evaluation", t)
    _write_golden(bundle, dataset=dataset, states=states_cut, now=cutoff, out_dir=out_dir)
    full, pop = methods["full pipeline"].ndcg_at_10, methods["popularity"].ndcg_at_10
    seconds = round(clock() - began, 3)
    metrics = {
        "dataset": dataset.name, "methods": {m: v.to_json() for m, v in methods.items()},
        "cohorts": {c: {m: v.to_json() for m, v in per.items()} for c, per in ev_result.cohorts.items()},
        "ndcg10_full_over_popularity": round(ratio(full, pop), 4),
        "ndcg10_full_over_popularity_by_cohort": {
            c: round(ratio(per["full pipeline"].ndcg_at_10, per["popularity"].ndcg_at_10), 4) for c, per in ev_result.cohorts.items()},
        "candidate_recall": round(ev_result.candidate_recall, 4), "recall_at_100_stage": RECALL_STAGE,
        "als": {"factors": als.factors, "regularization": als.regularization, "iterations": als.iterations, "alpha": als.alpha},
        "als_trials": als_trials, "data_notes": dict(dataset.notes),
        "items_created_after_their_events": late_items, "events_older_than_their_item": early_events,
        "train_seconds": seconds, "steps_seconds": steps, "cutoff": cutoff, "label_start": t1,
        "index_kind": info["index_kind"], "n_items": info["n_items"], "n_users_with_embedding": info["n_users"],
        "train_events": info["events"], "eval_events": int(len(dataset.events.between(cutoff, dataset.end))),
    }
    manifest = build_manifest(out_dir, bundle_version=bundle_version or new_bundle_version(now), created_at=now,
                              schema_version=SCHEMA_VERSION, data_watermark=info["watermark"], metrics=metrics)
    write_manifest(out_dir, manifest)
    return TrainResult(bundle_dir=out_dir, manifest=manifest, methods=methods, ndcg_ratio=ratio(full, pop),
                       seconds=seconds, steps=steps, cohorts=ev_result.cohorts)


def _write_golden(bundle: LoadedBundle, *, dataset: Dataset, states: Mapping[int, UserState], now: float, out_dir: Path) -> None:
    """One real request (a user with an embedding and history) and the scores this bundle gives it."""
    chosen = next((n for n, u in enumerate(dataset.users) if u.user_id in bundle.user_row and n in states), None)
    user_id = dataset.users[chosen].user_id if chosen is not None else None
    state = states.get(chosen, UserState()) if chosen is not None else UserState()
    vector = bundle.user_embedding(user_id, state)
    segment = bundle.segment_of(dataset.users[chosen].attrs()) if chosen is not None else "all"
    cands = bundle.candidates(state=state, user_vector=vector, segment_key=segment, now=now)
    scores = bundle.rank(state, cands, now, user_vector=vector)
    golden = {"user_id": user_id, "state": state.to_hash(), "now": now, "segment": segment,
              "candidates": cands.to_json(bundle.items), "expected_rows": len(cands),
              "expected_scores": [float(s) for s in scores]}
    (out_dir / "golden.json").write_text(json.dumps(golden))
