"""Several boosters, one model file: their average, as one LightGBM model.

A booster's raw score (before softmax) is the sum of its trees' leaf values. The mean of N boosters'
raw scores is then the sum of all their trees, each leaf value divided by N: one model that serving
loads, predicts and explains (`pred_contrib`) exactly as it does a single booster, N times the trees.
"""

from __future__ import annotations

import re

import lightgbm as lgb

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
