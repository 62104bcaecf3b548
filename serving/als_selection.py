"""ALS hyper-parameters chosen on a validation split: fit each candidate setting on the history
before `as_of`, score the ANN's recall@100 (exact inner product, what the index approximates) of
the interactions after it, keep the best. The shipped bundle is trained with the winner."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from serving.embeddings import AlsSettings, fit_als
from serving.marketplace import Dataset
from serving.seen_items import SeenPolicy, excluded


def select_als(dataset: Dataset, *, as_of: float, truth: Mapping[str, Mapping[str, float]], grid: Sequence[AlsSettings],
               seen: Mapping[int, Mapping[str, float]], policy: SeenPolicy, max_users: int,
               seed: int) -> tuple[AlsSettings, list[dict[str, Any]]]:
    """(best setting, one row per setting tried: factors, regularization, iterations, recall_at_100)."""
    from serving.training import stage_matrix

    matrix, ds_rows, active = stage_matrix(dataset, as_of=as_of)
    index_of = {u.user_id: n for n, u in enumerate(dataset.users)}
    row_of_user = {int(u): r for r, u in enumerate(active)}
    col_of_item = {dataset.items[int(d)].item_id: c for c, d in enumerate(ds_rows)}
    parent_of = {i.item_id: i.parent_category for i in dataset.items}.get
    users = sorted(u for u in truth if index_of[u] in row_of_user)
    if len(users) > max_users:
        users = [users[int(i)] for i in sorted(np.random.default_rng(seed).choice(len(users), max_users, replace=False))]
    if not users:
        return grid[0], []
    rows = np.array([row_of_user[index_of[u]] for u in users])
    banned_cols = [[col_of_item[i] for i in excluded(seen.get(index_of[u], {}), now=as_of, policy=policy, parent_of=parent_of)
                    if i in col_of_item] for u in users]
    wanted = [[col_of_item[i] for i in truth[u] if i in col_of_item] for u in users]
    trials, best, best_recall = [], grid[0], -1.0
    for setting in grid:
        user_vecs, item_vecs = fit_als(matrix, setting)
        scores = user_vecs[rows] @ item_vecs.T
        for n, cols in enumerate(banned_cols):
            scores[n, cols] = -np.inf
        k = min(100, scores.shape[1])
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        recall = float(np.mean([len(set(w) & set(top[n].tolist())) / len(w) if w else 0.0 for n, w in enumerate(wanted)]))
        trials.append({"factors": setting.factors, "regularization": setting.regularization,
                       "iterations": setting.iterations, "recall_at_100": round(recall, 4)})
        if recall > best_recall:
            best, best_recall = setting, recall
    return best, trials
