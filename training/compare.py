"""Training parameters compared on one feature table, before a whole training is spent on them.

    python -m training.compare --table training/data/table-2026-12-07.npz \\
        --variant leaves7:num_leaves=7,rounds=160 --families tls-mining,tunnel-shell-clear

The current parameters (`current`: train.PARAMS and train.ROUNDS) and each variant get one
out-of-fold draw (train.out_of_fold, seeded --seed) with thresholds of their own, chosen as
training chooses them; the figures the targets are stated in under those thresholds (tunnel
verdicts held, as users get them); and the session recall of each family named (evaluate.HELD_OUT)
left out of training and judged with them. A variant sets LightGBM parameters and `rounds`; the
rest of training (augmentation, weights, members, the two boosters) stays as it is.

A shipped model takes three draws and an evaluation of every family (about an hour on 2 cores);
this takes one draw and the families named: about 13 minutes a variant for 2026.12.07.1's table
(328k rows) and seven families. A variant that wins here is worth that hour, not yet shipping.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from training import evaluate, train
from training.dataset import Table

FIXED = ("objective", "num_class", "num_threads", "verbose")
"""Parameters a variant may not set: the classes and objective are the model's shape, and
threads and verbosity change nothing it learns."""


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    """`NAME:KEY=VALUE,KEY=VALUE` as a name and its changes; each value read as JSON (numbers,
    true/false) or else kept as text."""
    name, sep, body = text.partition(":")
    pairs = [p for p in body.split(",") if p] if sep else []
    if not name or not pairs or any("=" not in p for p in pairs):
        raise ValueError(f"--variant: expected NAME:KEY=VALUE[,KEY=VALUE...], not {text!r}")
    changes: dict[str, Any] = {}
    for pair in pairs:
        key, _, raw = pair.partition("=")
        if key in FIXED:
            raise ValueError(f"--variant {name}: {key} cannot be changed (fixed: {', '.join(FIXED)})")
        try:
            changes[key] = json.loads(raw)
        except json.JSONDecodeError:
            changes[key] = raw
    rounds = changes.get("rounds")
    if "rounds" in changes and (not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 1):
        raise ValueError(f"--variant {name}: rounds must be a whole number of 1 or more, not {rounds!r}")
    return name, changes


@contextmanager
def parameters(changes: dict[str, Any]) -> Iterator[None]:
    """train.PARAMS (and train.ROUNDS for `rounds`) with `changes`, as they were afterwards."""
    params, rounds = dict(train.PARAMS), train.ROUNDS
    train.PARAMS.update({k: v for k, v in changes.items() if k != "rounds"})
    train.ROUNDS = changes.get("rounds", rounds)
    try:
        yield
    finally:
        train.PARAMS.clear()
        train.PARAMS.update(params)
        train.ROUNDS = rounds


def compare(table: Table, changes: dict[str, Any], folds: int = 5, seed: int = 7,
            families: list[str] | None = None) -> dict[str, Any]:
    """One out-of-fold draw of `changes` on `table`: its thresholds and its figures under them, as
    training's `draws` give them (train.draw_summary), and the session recall of `families` left
    out (whole captures, first 20 packets, live windows)."""
    started = time.monotonic()
    with parameters(changes):
        proba = train.out_of_fold(table, folds, seed)
        thresholds = train.choose_all_thresholds(proba, table)
        report = train.metrics(table, train.decide_all(train.as_given(proba, table), thresholds,
                                                       table))
        left_out = (evaluate.leave_one_out(table, thresholds, seed, table.has_evidence, families)
                    if families else {})
    packets = report["early"]["stratum_mining"]["by_packets_read"]
    return {
        "changes": changes,
        **train.draw_summary([report], [thresholds], seed)[0],
        "mining_within_10_packets": packets.get("10", {}).get("recall"),
        "left_out": {name: {view: r.get(view, {}).get("recall")
                            for view in ("full", "first_20_packets", "live_windows")}
                     for name, r in left_out.items()},
        "seconds": round(time.monotonic() - started),
    }


FIGURES = (
    ("offline mining / tunnel threshold", lambda r: "{} / {}".format(
        r["thresholds"]["offline"]["stratum_mining"], r["thresholds"]["offline"]["reverse_tunnel"])),
    ("live mining / tunnel / opening mining threshold", lambda r: "{} / {} / {}".format(
        r["thresholds"]["live"]["stratum_mining"], r["thresholds"]["live"]["reverse_tunnel"],
        r["thresholds"]["opening"]["stratum_mining"])),
    ("corpus flows flagged", lambda r: r["corpus_false_positives"]),
    ("benign sessions flagged whole / live", lambda r: "{} / {}".format(
        r["benign_sessions_flagged"], r.get("live_benign_sessions_flagged"))),
    ("mining / tunnel sessions whole", lambda r: "{} / {}".format(
        r["mining_sessions"], r["tunnel_sessions"])),
    ("mining within 10 / 20 packets", lambda r: "{} / {}".format(
        r["mining_within_10_packets"], r["mining_within_20_packets"])),
    ("mining live within 5 s", lambda r: r.get("live_mining_within_5_s")),
    ("tunnels live within 30 s of first use", lambda r: r.get("live_tunnels_within_30_s_of_first_use")),
)


def render(results: dict[str, dict[str, Any]]) -> str:
    """The results side by side, a Markdown table (left-out families: whole / first 20 packets /
    live windows)."""
    names = list(results)
    rows = [(label, [str(get(results[n])) for n in names]) for label, get in FIGURES]
    families = list(dict.fromkeys(f for r in results.values() for f in r["left_out"]))
    for family in families:
        rows.append((f"left out: {family}", [
            " / ".join(str(v) for v in results[n]["left_out"].get(family, {}).values()) or "-"
            for n in names]))
    rows.append(("seconds", [str(results[n]["seconds"]) for n in names]))
    lines = ["| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    lines += ["| " + label + " | " + " | ".join(cells) + " |" for label, cells in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.compare", description=__doc__.splitlines()[0])
    ap.add_argument("--table", type=Path, required=True, help="feature table (.npz, training --table)")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VALUE,...",
                    help="LightGBM parameters and rounds to compare with the current ones "
                         "(repeatable), e.g. leaves7:num_leaves=7,rounds=160")
    ap.add_argument("--families", default="",
                    help="comma-separated families to leave out of training, of: "
                         + ", ".join(evaluate.HELD_OUT))
    ap.add_argument("--no-current", action="store_true", help="compare the variants alone")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", type=Path, default=None, help="also write every figure here")
    a = ap.parse_args(argv)
    try:
        variants = dict(parse_variant(v) for v in a.variant)
        if not a.no_current:
            if "current" in variants:
                raise ValueError("--variant: the name current is the current parameters'")
            variants = {"current": {}, **variants}
        if not variants:
            raise ValueError("--variant: none given, and --no-current leaves nothing to compare")
        families = [f for f in a.families.split(",") if f]
        unknown = [f for f in families if f not in evaluate.HELD_OUT]
        if unknown:
            raise ValueError(f"--families: unknown {', '.join(unknown)}; "
                             f"allowed: {', '.join(evaluate.HELD_OUT)}")
        if not a.table.is_file():
            raise ValueError(f"--table: no such file {a.table}")
    except ValueError as e:
        print(f"compare: {e}", file=sys.stderr)
        return 2
    table = Table.load(a.table)
    results = {}
    for name, changes in variants.items():
        results[name] = compare(table, changes, a.folds, a.seed, families)
        print(f"compare: {name} done in {results[name]['seconds']} s", file=sys.stderr)
        if a.json:  # written as each variant ends: a long comparison keeps what it has
            a.json.write_text(json.dumps(results, indent=1, default=_plain) + "\n")
    print(render(results))
    return 0


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else str(value)


if __name__ == "__main__":
    sys.exit(main())
