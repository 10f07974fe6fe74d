"""A LightGBM text model that LightGBM would crash on is refused before LightGBM sees it."""

from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flowguard.errors import ModelError
from flowguard.features import FEATURES
from flowguard.model import CLASSES, FlowClassifier, default_model_dir
from flowguard.modeltext import check_model_text


@pytest.fixture(scope="module")
def text() -> str:
    return (default_model_dir() / "model.txt").read_text()


def check(text: str) -> int:
    return check_model_text(text, "model.txt", len(FEATURES), len(CLASSES))


def test_shipped_boosters_pass(text: str) -> None:
    assert check(text) % len(CLASSES) == 0
    assert check((default_model_dir() / "model-live.txt").read_text()) > 0


def test_lightgbms_own_one_leaf_trees_pass() -> None:
    """LightGBM writes a tree that found no split with empty leaf_weight (and node arrays)."""
    import lightgbm as lgb
    import numpy as np

    x = np.random.default_rng(0).normal(size=(30, 3))
    booster = lgb.train({"objective": "regression", "min_data_in_leaf": 100, "verbose": -1},
                        lgb.Dataset(x, x[:, 0]), num_boost_round=2)
    one_leaf = booster.model_to_string()
    assert "num_leaves=1\n" in one_leaf and "leaf_weight=\n" in one_leaf
    assert check_model_text(one_leaf, "model.txt", 3, 1) == booster.num_trees()


def _nth_tree_line(text: str, key: str, n: int = 5) -> re.Match[str]:
    return list(re.finditer(rf"^{key}=.*$", text, flags=re.M))[n]


@pytest.mark.parametrize("edit, message", [
    (lambda t: t[: len(t) // 2], "not where tree_sizes puts it"),
    (lambda t: t.replace("tree_sizes=", "tree_sizes=1 1 1 ", 1), "not where tree_sizes puts it"),
    (lambda t: t.replace("tree_sizes=", "tree_sizes=1 ", 1), "whole number of rounds"),
    (lambda t: t.replace("\nTree=7\n", "\nTree=8\n", 1), "not where tree_sizes puts it"),
    (lambda t: t.replace("end of trees", "end of tress", 1), "end of trees"),
    (lambda t: t[: t.index("end of parameters")], "parameters section has no end"),
    (lambda t: t.replace("[seed: 7]", "7]", 1), "malformed parameter line"),
    (lambda t: t.replace("tree\n", "", 1), "no header"),
])
def test_layout_damage_is_refused(text: str, edit, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        check(edit(text))


def _same_size_edit(text: str, key: str, new: str) -> str:
    """Replace one tree's `key=` line with a line of the same length (tree_sizes stay right)."""
    m = _nth_tree_line(text, key)
    line = f"{key}={new}"
    assert len(line) <= len(m.group(0))
    return text[: m.start()] + line.ljust(len(m.group(0))) + text[m.end():]


@pytest.mark.parametrize("key, new, message", [
    ("left_child", "0 0 0 0 0 0 0 0 0 0 0 0 0 0", "child indices"),
    ("split_feature", "999 1 2 3 4 5 6 7 8 9 10 11 12 13", "split feature outside"),
    ("split_feature", "1 2 3", "split_feature has 3 values"),
    ("decision_type", "1 2 2 2 2 2 2 2 2 2 2 2 2 2", "cat_boundaries"),
    ("leaf_value", "nan", "leaf_value has 1 values"),
    ("num_leaves", "x", "malformed"),
])
def test_tree_damage_is_refused(text: str, key: str, new: str, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        check(_same_size_edit(text, key, new))


def test_loading_a_damaged_model_with_a_matching_checksum_raises(tmp_path: Path, text: str) -> None:
    """The operator edited model.txt and its checksum in metadata.json: LightGBM would abort the
    process on it; load raises ModelError instead."""
    model = tmp_path / "model"
    shutil.copytree(default_model_dir(), model)
    damaged = _same_size_edit(text, "right_child", "1 1 1")
    (model / "model.txt").write_text(damaged)
    meta = json.loads((model / "metadata.json").read_text())
    meta["model_sha256"] = hashlib.sha256(damaged.encode()).hexdigest()
    (model / "metadata.json").write_text(json.dumps(meta))
    for lazy in (False, True):
        with pytest.raises(ModelError, match="tree 5: malformed"):
            FlowClassifier.load(model, lazy=lazy)


def _mutations(text: str, n: int, seed: int) -> list[str]:
    rnd = random.Random(seed)
    lines = text.split("\n")
    out = []
    for _ in range(n):
        kind, ls = rnd.randrange(4), list(lines)
        i = rnd.randrange(len(ls))
        parts = ls[i].split(" ")
        j = rnd.randrange(len(parts))
        if kind == 0:
            out.append(text[: rnd.randrange(len(text))])
            continue
        if kind == 1:
            del ls[i]
        elif kind == 2 and len(parts) > 1:
            del parts[j]
        else:
            parts[j] = parts[j][:-1] + str(rnd.randrange(10)) if parts[j] else "7"
        if kind != 1:
            ls[i] = " ".join(parts)
        out.append("\n".join(ls))
    return out


def test_models_that_pass_never_crash_lightgbm(tmp_path: Path, text: str) -> None:
    """Random damage (cuts, lost lines, lost or changed values): whatever the check lets through,
    LightGBM loads and predicts with in a child process that survives it."""
    passed = []
    for i, mutated in enumerate(_mutations(text, 150, seed=11)):
        try:
            check(mutated)
        except ModelError:
            continue
        path = tmp_path / f"m{i}.txt"
        path.write_text(mutated)
        passed.append(str(path))
    assert passed, "no mutation passed the check: the test would check nothing"
    code = (
        "import sys, numpy as np, lightgbm\n"
        f"x = np.random.default_rng(0).uniform(0, 1000, (64, {len(FEATURES)})).astype(np.float32)\n"
        "for p in sys.argv[1:]:\n"
        "    print(p, flush=True)\n"
        "    try:\n"
        "        lightgbm.Booster(model_file=p).predict(x, num_threads=1)\n"
        "    except Exception:\n"
        "        pass\n"
    )
    r = subprocess.run([sys.executable, "-c", code, *passed], capture_output=True, text=True,
                       timeout=300)
    last = r.stdout.strip().splitlines()[-1:] or ["?"]
    assert r.returncode == 0, f"LightGBM died ({r.returncode}) on {last[0]}: {r.stderr[-300:]}"
