"""Deliberately bad bundles for game days and tests: they verify, and rank worse or slower.

    inverted   every leaf value of the LightGBM ranker negated: the ranker's best items come last
               (a bundle that passes every check and ranks badly)
    slow       the ranker's trees repeated 10 times: the same order (scores x10), 10x the trees
               to walk per request (a bundle that passes every check and ranks slowly)

`make_variant(src, dest, kind, version)` copies the bundle, rewrites ranker.txt, records the golden
scores of the new ranker (so check_golden_scores holds) and writes a fresh manifest under the new
version. The result passes replication.verifying with serving.bundle_checks: the point is that
verification cannot catch these, the rollout's gates must.
"""
from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

from regions.errors import InputError
from replication.manifest import build_manifest, write_manifest
from replication.verifying import read_manifest
from serving.bundle import LoadedBundle
from serving.features import Candidates
from serving.user_state import UserState

KINDS = ("inverted", "slow")
SLOW_FACTOR = 10
_TREE = re.compile(r"^Tree=\d+\n", re.M)


def _negate_leaves(line: str) -> str:
    key, _, values = line.partition("=")
    return key + "=" + " ".join(repr(-float(v)) for v in values.split())


def inverted_model(text: str) -> str:
    lines = [(_negate_leaves(line) if line.startswith("leaf_value=") else line) for line in text.split("\n")
             if not line.startswith("tree_sizes=")]
    return "\n".join(lines)


def slow_model(text: str, factor: int = SLOW_FACTOR) -> str:
    text = "\n".join(line for line in text.split("\n") if not line.startswith("tree_sizes="))
    head, sep, tail = text.partition("end of trees")
    if not sep:
        raise InputError("ranker.txt", "not a LightGBM text model (no 'end of trees')")
    starts = [m.start() for m in _TREE.finditer(head)]
    if not starts:
        raise InputError("ranker.txt", "not a LightGBM text model (no trees)")
    preamble, trees = head[: starts[0]], head[starts[0]:]
    bodies = [trees[a - starts[0]: b - starts[0]] for a, b in zip(starts, [*starts[1:], len(head)])]
    bodies = [_TREE.sub("", body, count=1) for body in bodies]
    out = [f"Tree={n}\n{body}" for n, body in enumerate(b for _ in range(factor) for b in bodies)]
    return preamble + "".join(out) + sep + tail


def _rewrite_golden(bundle_dir: Path) -> None:
    golden = json.loads((bundle_dir / "golden.json").read_text())
    bundle = LoadedBundle.load(bundle_dir)
    cands = Candidates.from_json(golden["candidates"], bundle.items)
    state = UserState.from_hash(golden["state"])
    vector = bundle.user_embedding(golden.get("user_id"), state)
    golden["expected_scores"] = [float(s) for s in bundle.rank(state, cands, float(golden["now"]), user_vector=vector)]
    (bundle_dir / "golden.json").write_text(json.dumps(golden))


def make_variant(src: Path, dest: Path, *, kind: str, version: str) -> Path:
    """A copy of the bundle at `src` in `dest`, with its ranker made `kind`, as bundle `version`."""
    if kind not in KINDS:
        raise InputError("kind", f"unknown variant {kind!r}; allowed: {', '.join(KINDS)}")
    if dest.exists():
        raise InputError("dest", f"{dest} exists; give a new directory")
    shutil.copytree(src, dest)
    text = (dest / "ranker.txt").read_text()
    (dest / "ranker.txt").write_text(inverted_model(text) if kind == "inverted" else slow_model(text))
    _rewrite_golden(dest)
    old = read_manifest(src)
    manifest = build_manifest(dest, bundle_version=version, created_at=time.time(), schema_version=old.schema_version,
                              data_watermark=old.data_watermark, metrics={**old.metrics, "variant": kind})
    write_manifest(dest, manifest)
    return dest


__all__ = ["KINDS", "SLOW_FACTOR", "inverted_model", "make_variant", "slow_model"]
