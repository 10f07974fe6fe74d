"""Several boosters, one model file: their average, as one LightGBM model.

A booster's raw score (before softmax) is the sum of its trees' leaf values. The mean of N boosters'
raw scores is then the sum of all their trees, each leaf value divided by N: one model that serving
loads, predicts and explains (`pred_contrib`) exactly as it does a single booster, N times the trees.

Binary boosters, one a class, make one multiclass model the same way (`one_vs_rest`): each class's
trees are its own booster's, so that each class can learn from features of its own.
"""

from __future__ import annotations

import re

import lightgbm as lgb

from flowguard.modeltext import model_header

_TREES = re.compile(r"^Tree=\d+\n(.*?)(?=^Tree=\d+\n|^end of trees)", re.M | re.S)
_SCALED = ("leaf_value", "internal_value")


def _scaled(tree: str, factor: float) -> str:
    out = []
    for line in tree.split("\n"):
        key, _, values = line.partition("=")
        if key in _SCALED and values:
            line = key + "=" + " ".join(repr(float(v) * factor) for v in values.split(" "))
        out.append(line)
    return "\n".join(out)


def _identity(text: str) -> str:
    """The header lines before `feature_infos` (version, classes, objective, feature names): what
    boosters must share to be averaged (feature_infos, the value ranges seen, may differ)."""
    return text.partition("feature_infos=")[0]


def average(boosters: list[lgb.Booster]) -> lgb.Booster:
    """One booster whose raw scores are the mean of `boosters`' (same features and classes)."""
    if not boosters:
        raise ValueError("average: no boosters")
    if len(boosters) == 1:
        return boosters[0]
    texts = [b.model_to_string() for b in boosters]
    header, _, _ = texts[0].partition("\nTree=0\n")
    head = [line for line in header.split("\n") if not line.startswith("tree_sizes=")]
    tail = texts[0][texts[0].index("end of trees"):]
    factor = 1.0 / len(boosters)
    blocks = []
    for text in texts:
        if _identity(text) != _identity(header):
            raise ValueError("average: boosters differ in classes, objective or features")
        blocks += [_scaled(body, factor) for body in _TREES.findall(text)]
    trees = "".join(f"Tree={i}\n{body}" for i, body in enumerate(blocks))
    return lgb.Booster(model_str="\n".join(head) + "\n\n" + trees + tail)


_ZERO_TREE = ("num_leaves=1\nnum_cat=0\nsplit_feature=\nsplit_gain=\nthreshold=\ndecision_type=\n"
              "left_child=\nright_child=\nleaf_value=0\nleaf_weight=\nleaf_count=0\ninternal_value=\n"
              "internal_weight=\ninternal_count=\nis_linear=0\nshrinkage=1\n\n\n")


def one_vs_rest(boosters: list[lgb.Booster | None]) -> lgb.Booster:
    """One multiclass model whose raw score for class k is `boosters[k]`'s (a binary booster of
    class k against the rest), or 0 where it is None (the reference class): its softmax gives class
    k exp(s_k) / (1 + sum of exp(s_j)). Each class's trees are then that booster's own, so each
    class can learn from features of its own (and `pred_contrib` explains it by them).

    The binary boosters must share their features and have as many trees each (one a round)."""
    texts = {k: b.model_to_string() for k, b in enumerate(boosters) if b is not None}
    if not texts:
        raise ValueError("one_vs_rest: no boosters")
    trees = {k: _TREES.findall(t) for k, t in texts.items()}
    first = next(iter(texts.values()))
    rounds = {len(t) for t in trees.values()}
    if len(rounds) != 1:
        raise ValueError(f"one_vs_rest: the boosters have different numbers of trees {sorted(rounds)}")
    for text in texts.values():
        header = model_header(text)
        if header.get("objective", "").split()[0] != "binary" or header.get("num_class") != "1":
            raise ValueError("one_vs_rest: every booster must be binary")
        if header.get("feature_names") != model_header(first).get("feature_names"):
            raise ValueError("one_vs_rest: boosters differ in features")
    n = len(boosters)
    infos = [i.split() for i in (model_header(t)["feature_infos"] for t in texts.values())]
    # a feature a booster never split on reads "none" there: take another's range or categories
    merged_infos = " ".join(next((i for i in column if i != "none"), "none")
                            for column in zip(*infos, strict=True))
    changed = {"num_class": str(n), "num_tree_per_iteration": str(n),
               "objective": f"multiclass num_class:{n}", "feature_infos": merged_infos}
    head = ["tree", *(f"{k}={changed.get(k, v)}" for k, v in model_header(first).items()
                      if k != "tree_sizes")]
    blocks = [trees[k][r] if k in trees else _ZERO_TREE
              for r in range(rounds.pop()) for k in range(n)]
    body = "".join(f"Tree={i}\n{b}" for i, b in enumerate(blocks))
    tail = first[first.index("end of trees"):]
    tail = re.sub(r"\[objective: [^\]]*\]", "[objective: multiclass]", tail)
    tail = re.sub(r"\[num_class: [^\]]*\]", f"[num_class: {n}]", tail)
    return lgb.Booster(model_str="\n".join(head) + "\n\n" + body + tail)
