"""A deliberately weaker copy of a bundle: same files, same checks passed, a worse ranker.

For A/B tests, canaries and bad-model game days that must show the online metrics and the gates
catching a bundle that *verifies* but ranks badly. Everything but the ranker is the source's
(embeddings, index, candidates, lists), so the weakness is the ranking alone:

- `inverted`: every leaf value of the LightGBM model negated: the exact reverse of the source's
  order over the same candidates (its worst-scored candidates come first);
- `shuffled`: within each tree, the leaf values permuted at random (seeded): a ranker of the same
  size and score range whose order has lost its relation to what users like;
- `identical`: the source's ranker unchanged under a new version: the A/A control, for checking
  that an experiment between two equal bundles declares no winner;
- `slow`: the source's trees repeated SLOW_FACTOR (10) times: the same order (scores x10) at ten
  times the trees to walk per request: a bundle that verifies and ranks slowly (the rollout game day).

The golden request's expected scores are recomputed with the new ranker and a new manifest is
written (a new bundle_version, the source's metrics plus `weakened`), so the bundle passes
replication.verifying with serving.bundle_checks like any other.
"""
from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import numpy as np

from regions.errors import InputError
from replication.manifest import MANIFEST_NAME, Manifest, build_manifest, write_manifest
from serving.bundle_checks import golden_request_scores

MODES = ("inverted", "shuffled", "identical", "slow")
SLOW_FACTOR = 10
_LEAVES = re.compile(r"^leaf_value=(.*)$", re.MULTILINE)
_TREE = re.compile(r"^Tree=\d+\n", re.MULTILINE)


def slow_model(text: str, factor: int = SLOW_FACTOR) -> str:
    """The model with its trees repeated `factor` times (renumbered; tree_sizes dropped, LightGBM then
    reads the trees one after the other)."""
    text = "\n".join(line for line in text.split("\n") if not line.startswith("tree_sizes="))
    head, sep, tail = text.partition("end of trees")
    starts = [m.start() for m in _TREE.finditer(head)]
    if not sep or not starts:
        raise InputError("ranker.txt", "holds no trees: not a LightGBM text model")
    bodies = [_TREE.sub("", head[a:b], count=1) for a, b in zip(starts, [*starts[1:], len(head)])]
    trees = "".join(f"Tree={n}\n{body}" for n, body in enumerate(b for _ in range(factor) for b in bodies))
    return head[: starts[0]] + trees + sep + tail


def _weaken_model(text: str, *, mode: str, rng: np.random.Generator) -> str:
    def one(match: re.Match[str]) -> str:
        values = np.array([float(v) for v in match.group(1).split()])
        values = -values if mode == "inverted" else rng.permutation(values)
        return "leaf_value=" + " ".join(repr(float(v)) for v in values)

    weakened, n = _LEAVES.subn(one, text)
    if n == 0:
        raise InputError("ranker.txt", "holds no leaf_value lines: not a LightGBM text model")
    return weakened


def weaken_bundle(src: Path, out: Path, *, mode: str = "inverted", seed: int = 0, version: str | None = None) -> Manifest:
    """Write the weaker copy of bundle directory `src` into `out` (absent or empty); return its manifest."""
    if mode not in MODES:
        raise InputError("mode", f"unknown mode {mode!r}; allowed: {', '.join(MODES)}")
    src, out = Path(src), Path(out)
    if not (src / MANIFEST_NAME).exists():
        raise InputError("src", f"{src} is not a bundle directory (no {MANIFEST_NAME})")
    if out.exists() and any(out.iterdir()):
        raise InputError("out", f"{out} already holds files; pass an empty or new directory")
    source = json.loads((src / MANIFEST_NAME).read_text())
    shutil.copytree(src, out, dirs_exist_ok=True, ignore=shutil.ignore_patterns(MANIFEST_NAME))
    ranker = out / "ranker.txt"
    if mode == "slow":
        ranker.write_text(slow_model(ranker.read_text()))
    elif mode != "identical":
        ranker.write_text(_weaken_model(ranker.read_text(), mode=mode, rng=np.random.default_rng(seed)))
    golden = json.loads((out / "golden.json").read_text())
    _, scores = golden_request_scores(out, golden)
    golden["expected_scores"] = [float(s) for s in scores]
    (out / "golden.json").write_text(json.dumps(golden))
    manifest = build_manifest(
        out, bundle_version=version or f"{source['bundle_version']}-{mode}", created_at=time.time(),
        schema_version=int(source["schema_version"]), data_watermark=float(source["data_watermark"]),
        metrics={**source.get("metrics", {}), "weakened": {"mode": mode, "seed": seed, "from": source["bundle_version"]}})
    write_manifest(out, manifest)
    return manifest
