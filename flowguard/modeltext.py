"""Structure checks for LightGBM's text model format, before LightGBM parses it.

LightGBM (4.x) splits the trees of a text model by the byte counts of its `tree_sizes` header and
parses them in parallel threads; a model whose counts or arrays do not match its trees does not
raise an error there: the process aborts or crashes. A model's sha256 in its metadata stops a file
from being swapped, not an operator who edits both; `check_model_text` makes any such model a
ModelError instead of a dead appliance.

It checks the layout LightGBM writes (`Booster.save_model`): header, then `Tree=i` blocks of exactly
the sizes listed, then `end of trees`; in each tree, arrays whose lengths match `num_leaves`, child
indices that make one tree, split features within the model's features and categorical splits
that point at their categories.
"""

from __future__ import annotations

import math
import re

from flowguard.errors import ModelError

_NODE_ARRAYS = ("split_feature", "threshold", "decision_type", "left_child", "right_child")
_OPTIONAL_NODE_ARRAYS = ("split_gain", "internal_value", "internal_weight", "internal_count")
_OPTIONAL_LEAF_ARRAYS = ("leaf_weight", "leaf_count")
_CATEGORICAL_SPLIT = 1  # decision_type bit: the threshold indexes cat_boundaries


def model_header(text: str) -> dict[str, str]:
    """The key=value lines that open a LightGBM text model (up to the first blank line)."""
    header: dict[str, str] = {}
    for line in text.splitlines()[:64]:
        if not line.strip():
            break
        key, sep, value = line.partition("=")
        if sep:
            header[key.strip()] = value.strip()
    return header


def split_features(text: str) -> frozenset[int]:
    """The indices of the features that the model's trees split on: the columns it reads."""
    found: set[int] = set()
    for line in re.findall(r"^split_feature=(.*)$", text, flags=re.MULTILINE):
        found.update(int(i) for i in line.split())
    return frozenset(found)


def one_class_text(text: str, cls: int, trees_per_iteration: int) -> str:
    """The model `text` (passed by check_model_text) with only the trees of output `cls`, as a model
    of one output: it predicts that class's raw score, and its SHAP values (`pred_contrib`) are the
    whole model's for that class, computed on a third of the trees of three classes. LightGBM writes
    each round's trees one class after another."""
    header = model_header(text)
    sizes = [int(s) for s in header["tree_sizes"].split()]
    pos = text.find("\n\n") + 2
    trees: list[str] = []
    for i, size in enumerate(sizes):
        if i % trees_per_iteration == cls:
            body = text[pos : pos + size].split("\n", 1)[1]
            trees.append(f"Tree={len(trees)}\n{body}")
        pos += size
    changed = {"num_class": "1", "num_tree_per_iteration": "1", "objective": "regression",
               "tree_sizes": " ".join(str(len(t)) for t in trees)}
    lines = ["tree", *(f"{k}={changed.get(k, v)}" for k, v in header.items())]
    return "\n".join(lines) + "\n\n" + "".join(trees) + "end of trees\n"


def check_model_text(text: str, where: str, n_features: int, trees_per_iteration: int) -> int:
    """Raise ModelError naming `where` unless `text` is a whole LightGBM text model of trees over
    `n_features` features with `trees_per_iteration` trees a round; returns the number of trees."""
    head_end = text.find("\n\n")
    if not text.startswith("tree\n") or head_end < 0:
        raise ModelError(f"{where}: not a LightGBM text model (no header)")
    header = model_header(text)
    try:
        sizes = [int(s) for s in header["tree_sizes"].split()]
    except (KeyError, ValueError):
        raise ModelError(f"{where}: the header's tree_sizes are missing or not numbers") from None
    if not sizes or len(sizes) % trees_per_iteration:
        raise ModelError(f"{where}: {len(sizes)} trees is not a whole number of rounds of "
                         f"{trees_per_iteration}")
    pos = head_end + 2
    for i, size in enumerate(sizes):
        block = text[pos : pos + size]
        if size <= 0 or len(block) < size or not block.startswith(f"Tree={i}\n"):
            raise ModelError(f"{where}: tree {i} is not where tree_sizes puts it (the file was "
                             "cut or edited)")
        _check_tree(block, f"{where}: tree {i}", n_features)
        pos += size
    if not text.startswith("end of trees", pos):
        raise ModelError(f"{where}: no `end of trees` after the {len(sizes)} trees")
    _check_parameters(text[pos:], where)
    return len(sizes)


_PARAMETER = re.compile(r"\[\w+: [^\n\]]*\]")


def _check_parameters(trailer: str, where: str) -> None:
    """The `parameters:` section after the trees, which LightGBM also parses without checks."""
    start = trailer.find("\nparameters:\n")
    if start < 0:
        return
    body, sep, _ = trailer[start + len("\nparameters:\n") :].partition("\nend of parameters")
    if not sep:
        raise ModelError(f"{where}: its parameters section has no end (the file was cut)")
    for line in body.splitlines():
        if line and not _PARAMETER.fullmatch(line):
            raise ModelError(f"{where}: malformed parameter line {line[:60]!r}")


def _check_tree(block: str, where: str, n_features: int) -> None:
    fields = dict(line.partition("=")[::2] for line in block.splitlines()[1:] if "=" in line)
    try:
        leaves = int(fields["num_leaves"])
        n_cat = int(fields.get("num_cat", "0"))
        leaf_value = _floats(fields, "leaf_value", leaves)
        _floats(fields, "shrinkage", 1)
        if fields.get("is_linear", "0") != "0":
            raise ModelError(f"{where}: linear trees are not supported")
        if leaves < 1 or n_cat < 0 or not all(map(math.isfinite, leaf_value)):
            raise ValueError("num_leaves, num_cat or leaf values out of range")
        for name in _OPTIONAL_LEAF_ARRAYS:
            if name in fields and (leaves > 1 or fields[name]):  # one leaf: LightGBM writes none
                _floats(fields, name, leaves)
        if leaves == 1:
            return
        nodes = leaves - 1
        features = _ints(fields, "split_feature", nodes)
        threshold = _floats(fields, "threshold", nodes)
        decision = _ints(fields, "decision_type", nodes)
        children = _ints(fields, "left_child", nodes) + _ints(fields, "right_child", nodes)
        for name in _OPTIONAL_NODE_ARRAYS:
            if name in fields:
                _floats(fields, name, nodes)
        if not all(0 <= f < n_features for f in features):
            raise ValueError("a split feature outside the model's features")
        # every node but the root, and every leaf (as ~index), is the child of exactly one node
        if sorted(children) != list(range(-leaves, 0)) + list(range(1, nodes)):
            raise ValueError("child indices do not make one tree")
        if not all(0 <= d < 16 for d in decision):
            raise ValueError("a decision_type out of range")
        categorical = [t for d, t in zip(decision, threshold, strict=True) if d & _CATEGORICAL_SPLIT]
        if categorical or n_cat:
            bounds = _ints(fields, "cat_boundaries", n_cat + 1)
            if bounds[0] != 0 or any(b > a for a, b in zip(bounds[1:], bounds, strict=False)):
                raise ValueError("cat_boundaries are not increasing from 0")
            _ints(fields, "cat_threshold", bounds[-1])
            if not all(t == int(t) and 0 <= t < n_cat for t in categorical):
                raise ValueError("a categorical split without its categories")
    except ModelError:
        raise
    except KeyError as exc:
        raise ModelError(f"{where}: malformed (no {exc.args[0]} field)") from None
    except ValueError as exc:
        raise ModelError(f"{where}: malformed ({exc})") from None


def _floats(fields: dict[str, str], name: str, count: int) -> list[float]:
    values = [float(v) for v in fields[name].split()]
    if len(values) != count:
        raise ValueError(f"{name} has {len(values)} values, expected {count}")
    return values


def _ints(fields: dict[str, str], name: str, count: int) -> list[int]:
    values = [int(v) for v in fields[name].split()]
    if len(values) != count:
        raise ValueError(f"{name} has {len(values)} values, expected {count}")
    return values
