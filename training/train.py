"""One command from labelled captures to a shipped model directory.

    python -m training.train --runs training/data --corpus ../shared/corpus/ndpi-benign

1. builds the feature table (training/dataset.py) from every lab run under --runs and the benign
   corpus, with the capture options and features triage uses;
2. evaluates with grouped cross-validation: folds are split by capture session, so no session has
   flows on both sides (`session_folds`); thresholds are chosen on those out-of-fold scores, in
   THRESHOLD_DRAWS draws with their own splits and seeds, each threshold the draws' median
   (`median_thresholds`);
3. trains the final boosters on everything and writes models/<version>/ (model.txt, model-live.txt,
   metadata.json, metrics.json) and models/CURRENT.

Two boosters (KINDS): `offline` learns from whole captures and their early cuts and judges
triage's flows; `live` learns from those and from the live windows too, and judges live windows.
Trained together on the live windows, the offline booster generalized worse to held-out families.

Each booster is the average of `MEMBERS` seeded boosters (training/ensemble.py), and out-of-fold
scores average as many fold splits. Both learn also from copies of some of their rows with other
message sizes, and the offline booster from copies of its connections carried in TLS
(training/augment.py, `AUGMENTED_VIEWS`). Seeded throughout: the same data and seed
give the same model.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import sklearn
from scipy.special import softmax
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support
from sklearn.model_selection import StratifiedKFold

from flowguard.capture import CaptureOptions, library_versions, live_options
from flowguard.features import (
    APP_FAMILIES,
    CATEGORICAL,
    FEATURES,
    MIN_JUDGED_PACKETS,
    PER_DIRECTION_PAYLOADS,
    judged,
    opens_connection,
)
from flowguard.model import (
    CLASSES,
    LIVE_MODEL_FILE,
    MODEL_FILE,
    FlowClassifier,
    LiveModel,
    ModelMetadata,
    sha256_file,
)
from training import augment
from training.dataset import CUTS_S, LIVE_VIEW, LIVE_VIEWS, Table, build, concat, feedback_table
from training.ensemble import average, one_vs_rest

PARAMS: dict[str, Any] = {
    "objective": "multiclass",
    "num_class": len(CLASSES),
    "learning_rate": 0.15,
    "num_leaves": 15,
    "min_data_in_leaf": 10,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "deterministic": True,
    "force_row_wise": True,
    "num_threads": 2,
    "verbose": -1,
}
ROUNDS = 80
"""80 rounds of 15-leaf trees: as accurate here as 300 of 31 leaves (grouped CV), 5x faster to
predict (about 7 us a flow with LightGBM then) and 12x faster to explain (pred_contrib, then
about 0.4 ms a flagged flow; 0.13 ms on one class's trees, FlowClassifier.explain). Those are
one booster's figures: a shipped booster averages MEMBERS of them, three times the trees and time.

Other parameters, compared on 2026.12.07.1's table (`python -m training.compare`: one out-of-fold
draw seeded 7, each variant's thresholds its own, seven families left out). These PARAMS: offline
mining threshold 0.87, mining within 20 packets 0.976, live within 5 s 0.965, lab benign sessions
flagged live 14; left out, whole, TLS mining 0.94, Ethereum 0.94, Bitcoin 0.96, XMRig 0.95,
Dropbear 0.81, the cleartext reverse shell 0.70, and live windows of the WebSocket tunnel 0.94.
- `extra_trees`: 0.95, 0.744, 0.879 (not left out further).
- `feature_fraction` 0.5, `min_data_in_leaf` 30: 0.91, 0.956, 0.974, 9; 0.92, 0.94, 0.93, 0.90,
  0.89, 0.70, 0.87.
- `feature_fraction_bynode` 0.6: 0.89, 0.968, 0.964, 7; 0.93, 0.94, 0.95, 0.92, 0.85, 0.73, 0.95.
- `num_leaves` 7, 160 rounds: 0.83, 0.979, 0.964, 5; 0.94, 0.96, 0.95, 0.98, 0.83, 0.33, 0.52.
- `num_leaves` 11, 110 rounds: 0.87, 0.976, 0.970, 8; 0.93, 0.95, 0.96, 0.92, 0.81, 0.40, 0.57.
None finds families it never saw better on both sides: smaller trees flagged fewer benign sessions
live, and 7 leaves found left-out miners as often or more, but both lost the left-out cleartext
shell and WebSocket tunnel."""
MIN_THRESHOLD = 0.5
MEMBERS = 3
"""Each shipped booster is the average of this many, trained with seeds seed, seed+1, ...
(`training.ensemble.average`: one model file, serving unchanged), and out-of-fold scores are the
average over as many fold splits (`out_of_fold`). With one booster and one split, the thresholds
hung on which corpus files a fold happened to leave out together: on the same table, splits seeded
7, 8 and 9 set the offline mining threshold at 0.98, 0.93 and 0.96; averaged over the three, 0.91."""


def weights(y: np.ndarray, groups: list[str], views: list[str] | None = None) -> np.ndarray:
    """Each class weighs the same in total, and within a class each session weighs the same:
    a long session cut into many windows must not drown out short ones. Within a session, its
    live windows (many small ones) weigh as much together as its other rows."""
    g = np.array(groups)
    part = np.isin(views, LIVE_VIEWS) if views is not None else np.zeros(len(y), dtype=bool)
    w = np.zeros(len(y), dtype=np.float64)
    for c in np.unique(y):
        in_c = y == c
        sessions, inverse = np.unique(g[in_c], return_inverse=True)
        keys = inverse * 2 + part[in_c]
        _, key_inverse, key_counts = np.unique(keys, return_inverse=True, return_counts=True)
        parts_per_session = np.bincount(np.unique(keys) // 2, minlength=len(sessions))
        w[in_c] = 1.0 / (len(sessions) * parts_per_session[inverse] * key_counts[key_inverse])
    corpus = (y == CLASSES.index("benign")) & np.char.startswith(g.astype(str), "corpus/")
    lab = (y == CLASSES.index("benign")) & ~corpus
    if corpus.any() and lab.any():
        total = w[corpus].sum() + w[lab].sum()
        w[corpus] *= CORPUS_SHARE * total / w[corpus].sum()
        w[lab] *= (1 - CORPUS_SHARE) * total / w[lab].sum()
    return w * len(y) / w.sum()


CORPUS_SHARE = 0.5
"""Of the benign class's weight, the share of the real-world corpus's captures (each capture one
session, weighing the same), the rest for the lab's benign sessions. Weighed as any session, the
corpus's 240 captures were an eighth of the class beside the lab's 1760 benign sessions, and the
booster learnt the lab's dozen benign programs far better than the real world's traffic: a few
corpus flows it never saw (an XMPP chat, a speed test's control connection, an MSSQL fragment)
then scored 0.97 for mining out-of-fold and set the thresholds. Measured on 2026.11.24.1's table
(runs r1-r27, x1-x6, v1-v3; out-of-fold, three fold splits seeded 7), the corpus weighing 1, 10
and 30 times a lab session: offline mining threshold 0.97 / 0.87 / 0.81, live opening 0.90 / 0.72
/ 0.50; mining within 20 packets 0.902 / 0.969 / 0.976, flagged live within 5 s 0.916 / 0.960 /
0.983; lab benign sessions flagged live 2 / 8 / 8 of 1760 (the session budget then bounds the
thresholds: LAB_SESSION_FP_BUDGET); left out of training (offline booster, whole captures),
Bitcoin stratum found in 0.42 / 0.73 / 0.75 of its sessions, TLS mining 0.63 / 0.74 / 0.77, Monero
0.65 / 0.80 / 0.82, Ethereum 0.65 / 0.88 / 0.89, XMRig 0.56 / 0.75 / 0.79, the TLS reverse shell
0.62 / 0.67 / 0.64. Half (here about 7 times a lab session) takes the middle: model 2026.11.24.2.
Whole models with a share of 0.5 and 0.8 (evaluate, three seeds): mining flagged live within 5 s
0.933 / 0.977, within 20 packets 0.970 / 0.979, but the live tunnel thresholds rose (0.96 / 0.99,
openings 0.79 / 0.94): tunnels flagged live within 5 s of their connection 0.959 / 0.893, and left
out of training, the live windows of `ssh -R` in TLS were found in 0.83 / 0.26 of its sessions and
of the TLS reverse shell in 0.62 / 0.29 (whole captures: mining families within 0.06 either way)."""


def fit(X: np.ndarray, y: np.ndarray, w: np.ndarray, seed: int, binary: bool = False) -> lgb.Booster:
    """One booster of PARAMS over the classes (`binary`: of y, 0 or 1, as a binary objective)."""
    params = {**PARAMS, "seed": seed}
    if binary:
        del params["num_class"]
        params["objective"] = "binary"
    data = lgb.Dataset(X, y, weight=w, feature_name=list(FEATURES),
                       categorical_feature=list(CATEGORICAL), free_raw_data=False)
    return lgb.train(params, data, num_boost_round=ROUNDS)


UNKNOWABLE_VIEWS = {"reverse_tunnel": ("pkt10", "pkt20")}
"""Views in which a class cannot be told apart yet, left out of training (kept in evaluation): the
first 20 packets of an SSH connection are its handshake, the same whichever way it will be used."""


def trainable(table: Table) -> np.ndarray:
    """Rows to learn from: all but the UNKNOWABLE_VIEWS of their class, the windows too small
    to judge (features.judged: their verdict is benign whatever the model says), and the mining
    sessions in which nothing was mined (dataset.MIN_MINED_SHARES)."""
    views = np.array(table.views)
    keep = judged(table.X)
    unmined = table.summary.get("unmined_sessions")
    if isinstance(unmined, list) and unmined:
        keep &= ~np.isin(table.groups, unmined)
    for cls, unknowable in UNKNOWABLE_VIEWS.items():
        keep &= ~((table.y == CLASSES.index(cls)) & np.isin(views, unknowable))
    return keep


KINDS = ("offline", "live")


def scored_on(table: Table, kind: str) -> np.ndarray:
    """Rows a booster of `kind` judges: live windows and connections rebuilt from them for `live`,
    every other view for `offline`."""
    live = np.isin(table.views, LIVE_VIEWS)
    return live if kind == "live" else ~live


OFFLINE_IGNORES = ("app_family", "app_guessed", *PER_DIRECTION_PAYLOADS)
"""Features not shown to the offline booster (blanked while it learns, so no tree splits on them).

nDPI's label: with it, the booster learnt "nDPI says TLS, so benign": left out of training, TLS
mining was found in 0.32 of its sessions and Bitcoin stratum in 0.33; without it, 0.75 and 0.71,
with the same grouped-CV recall and corpus false positives. The live booster keeps it: in live
windows, which mostly lack their handshake, it holds its false positives down (without it the live
thresholds rose to 0.999 and 30 s recall of mining sessions fell from 0.98 to 0.72). Measured again
with model 2026.11.23.13's data and three-seed averages: without it, the live booster found TLS
mining left out of training in 0.91 of its sessions instead of none, Monero 0.95 instead of 0.61 and
Ethereum 0.87 instead of 0.52, but the TLS reverse shell in 0.03 instead of 0.80 and Dropbear in
0.65 instead of 0.82 (the tunnel threshold rose from 0.89 to 0.995); mining flagged within 5 s
0.988 instead of 0.992. So since 2026.11.23.14 the live booster's mining half goes without it and
its tunnel half keeps it (LIVE_CLASS_IGNORES).

Each direction's first payload sizes (`s2d_payNN_size`, `d2s_payNN_size`): they let a booster learn
each stratum dialect's message sizes. Given to both boosters, grouped CV improved (stratum within
20 packets 0.92 to 0.997) but whole-capture session recall of a family left out of training fell
(Bitcoin stratum 0.49 to 0.12, Ethereum 0.82 to 0.43, the TLS reverse shell 0.44 to 0.08). The live
booster keeps them: a live window that opens a TLS connection holds the handshake and the first
messages, whose interleaving is a race (see features.PAYLOADS_PER_DIRECTION); with them, mining
sessions flagged within 5 s rose from 0.80 to 0.88 and left-out Monero stratum's live recall from
0.67 to 0.96, while the left-out TLS reverse shell's fell from 0.76 to 0.32.

The PSH ratios (`s2d_psh_ratio`, `d2s_psh_ratio`) are kept, though they depend on how the TLS stack
writes: Go TLS miners the model never saw (held-out runs r33-r36, training/make_data.sh) were missed
mostly for their servers' lower PSH ratio. Without them (model 2026.11.23.14's table, three seeds):
Go TLS miners found offline 11 -> 13 of 16 and within 20 packets 4 -> 10 of 16, lab mining within
20 packets 0.960 -> 0.968, corpus flows flagged 2 -> 1; but leave-one-scenario-out fell: TLS mining
0.77 -> 0.58, Bitcoin 0.84 -> 0.44, Ethereum 0.94 -> 0.82, TLS reverse shell 0.53 -> 0.30."""


LIVE_CLASS_IGNORES: dict[str, tuple[str, ...]] | None = {"stratum_mining": ("app_family", "app_guessed")}
"""The live booster is one binary booster per malicious class against the rest (None: one
multiclass booster), each without the features listed for its class; ensemble.one_vs_rest makes
them one model (raw scores 0, mining's, tunnel's), which serving loads, compiles and explains as
any other. Mining's goes without nDPI's label, the tunnels' keep it (see OFFLINE_IGNORES).

Measured on model 2026.11.23.14's table (three seeds), multiclass -> one-vs-rest: live windows of a
family left out of training found in TLS mining 0.0 -> 0.83, Monero 0.58 -> 0.68, Ethereum 0.55 ->
0.57, Bitcoin 0.03 -> 0.01, TLS reverse shell 0.78 -> 0.75, Dropbear 0.83 -> 0.82, cleartext shell
0.03 -> 0.10; out-of-fold, mining flagged within 5 s 0.994 -> 0.970 (the opening threshold rose
0.55 -> 0.82), tunnels within 30 s of first use 0.998 -> 0.996, lab benign sessions flagged live
7 -> 5 of 1535, corpus windows and connections 1 -> 2 of 8067. One-vs-rest with the label kept
for both: TLS mining 0.0, mining within 5 s 0.990."""


def _blanked(X: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    if not names:
        return X
    X = X.copy()
    X[:, [FEATURES.index(name) for name in names]] = np.nan
    return X


AUGMENTED_VIEWS: dict[str, tuple[str, ...]] = {
    "offline": ("full", *(f"cut{s}" for s in CUTS_S)), "live": LIVE_VIEWS}
"""Per booster kind, the views whose rows get resized copies in training (training.augment): the
offline booster's whole captures and their cuts in seconds, not its first-packets cuts; the live
booster's live windows and connections so far, but of those only the rows without their
connection's SYN (AUGMENT_OPENINGS): a connection's first window and first packets are judged by
the sizes of its handshake and first messages.

Measured on model 2026.11.24.2's table, offline booster, out-of-fold over three fold splits seeded
7; left out of training, whole captures of Bitcoin, TLS mining, Monero, Ethereum, XMRig, the TLS
reverse shell, Dropbear:
- no copies (2026.11.24.2): mining threshold 0.91, mining within 10 / 20 packets 0.82 / 0.970; left
  out 0.82, 0.75, 0.80, 0.91, 0.73, 0.64, 0.89; lab benign sessions flagged in any offline view
  (whole or cut) 24 of 1760;
- whole captures and cuts in seconds, 2 copies (since 2026.11.24.4): 0.94, 0.70 / 0.936; left out
  0.95, 0.79, 0.93, 0.97, 0.70, 0.89, 0.86; 6 of 1760. With 1 or 4 copies the same within 0.03;
  with 120 rounds instead of 80, within 20 packets 0.956 and Bitcoin 0.98, but half as many trees
  again to predict (BENCHMARKS.md: features and prediction at 200k flows/s a core);
- every offline view, 2 copies: 0.91, 0.62 / 0.932; 0.95, 0.81, 0.93, 0.99, 0.76, 0.80, 0.85
  (left out, Ethereum within 20 packets 0.13 -> 0.69); 18 of 1760;
- only mining and benign rows resized: within 20 packets 0.902, the TLS shell 0.73;
- how much (every offline view resized): sizes scaled by 1/1.5-1.5 alone, Bitcoin 0.83 and
  Monero 0.85; 0-40 bytes added alone, 0.66 and 0.83; 1/2-2 and 0-40, 0.86 and 0.92; 1/3-3 and 0-60
  (SCALE, OFFSET), 0.97 and 0.94 (another seed 0.96, 0.93); 1/5-5 and 0-100, 0.97 and 0.92 with 20
  packets 0.922.

TLS wrapping (augment.wrapped) of the copied rows that open their connection, on top (same table,
same measures; thresholds mining / tunnel; mining within 10 / 20 packets; corpus flows flagged; lab
benign sessions flagged whole; left out: Bitcoin, TLS mining, Monero, Ethereum, XMRig, the TLS
reverse shell, Dropbear):
- none (2026.11.24.5): 0.94 / 0.94; 0.70 / 0.936; 2; 2; 0.95, 0.79, 0.93, 0.97, 0.70, 0.89, 0.86;
- one of the two copies, TLS and SSH connections not wrapped: 0.92 / 0.88; 0.73 / 0.950; 2; 3;
  0.96, 0.89, 0.93, 0.97, 0.78, 1.0, 0.86;
- both copies (augment.WRAPPED, since 2026.11.24.6): 0.91 / 0.90; 0.76 / 0.956; 1; 3; 0.97, 0.89,
  0.93, 0.97, 0.79, 1.0, 0.87. The first 10 packets of the lab's benign TLS sessions (their
  handshake alone) were flagged in 9 of 1760 sessions instead of none: within the row budget;
- both copies, SSH connections wrapped too: 0.90 / 0.98; 0.77 / 0.962; 2; 1; 0.97, 0.94, 0.94,
  0.98, 0.79, 0.49, 0.84: TLS mining better, but the tunnel threshold rose (synthetic SSH in
  TLS, benign and tunnel alike) and the TLS reverse shell fell (NOT_WRAPPED); one copy: 0.93 /
  0.93; 0.70 / 0.943; 2; 3; 0.95, 0.89, 0.93, 0.98, 0.73, 0.91, 0.88.

The live booster (its out-of-fold scores over the same three splits; left out of training, one
booster each, families' live windows found in their sessions: Bitcoin, TLS mining, Monero,
Ethereum, XMRig, the TLS reverse shell, `ssh -R` in TLS):
- no copies (2026.11.24.4): live thresholds mining 0.96, tunnel 0.96, openings 0.86, 0.79; mining
  flagged within 5 s of its first packet 0.933, tunnels within 5 s 0.959 and within 30 s of first
  use 1.0; left out 0.24, 0.82, 0.50, 0.82, 0.83, 0.40, 0.90;
- windows without their connection's SYN copied (since 2026.11.24.5): 0.995, 0.88, 0.80, 0.90;
  0.952, 0.894, 1.0; left out 0.96, 0.96, 0.87, 0.94, 0.81, 0.89, 1.0; corpus windows and
  connections flagged 2 of 8067 (1); lab benign sessions flagged live 9 of 2000 (9);
- every live row but openings copied (connections so far too): mining within 5 s 0.800, XMRig
  left out 0.57;
- every row of the live booster copied (a whole model): mining within 5 s 0.620;
- on top of 2026.11.24.5's, a copy carried in TLS (augment.wrapped, sizes as they were) of each
  live row that opens its connection (nDPI saying neither TLS nor SSH): opening thresholds 0.88
  and 0.94, mining within 5 s 0.848 and within 30 s 0.949, tunnels within 5 s 0.842, lab benign
  sessions flagged live 3 of 2000 (9). The live booster takes no TLS copies (AUGMENT_OPENINGS)."""
AUGMENT_OPENINGS: dict[str, bool] = {"offline": True, "live": False}
"""Per booster kind: are rows that hold their connection's SYN copied too (AUGMENTED_VIEWS)?"""
AUGMENT_RATIOS: dict[str, float | None] = {"offline": 3.0, "live": None}
"""Per booster kind, how far apart the two directions' size factors of a resized copy may be
(augment.resized; None: drawn independently). A pool's job pushes are larger than its miner's
shares whatever the dialect, and a chat's messages are as large both ways: drawn independently
(each 1/3 to 3), a copy may turn that around by up to 9 times, and the booster learns less from
which side sends the larger messages.

Measured on 2026.11.24.9's table, offline booster, out-of-fold over three fold splits and left out
of training as in AUGMENTED_VIEWS, four seeds (7, 107, 207, 307; means), independent -> 1.5 -> 3:
mining threshold 0.93 -> 0.91 -> 0.91 (seed 7: 0.90 -> 0.89 -> 0.89); mining within 20 packets
0.942 -> 0.954 -> 0.952 (0.964 -> 0.961 -> 0.965), within 10 packets 0.68 -> 0.73 -> 0.72 (0.74 ->
0.77 -> 0.77); lab benign sessions flagged whole 7.75 -> 5.5 -> 5 of 2273 (7, 7, 7, 10 -> 5, 5, 5,
5 at 3); tunnel threshold 0.77 -> 0.82 -> 0.80, tunnels found whole 1.0 either way; corpus
flows flagged 1.75 -> 1.75 -> 2; left out of training, TLS mining 0.86 -> 0.89 -> 0.88, Ethereum
0.93 -> 0.96 -> 0.96, Bitcoin 0.95 -> 0.95 -> 0.95, Monero 0.93 -> 0.93 -> 0.93, XMRig 0.73 -> 0.74
-> 0.72, Dropbear 0.91 -> 0.90 -> 0.90, the TLS reverse shell 1.0 -> 0.98 -> 0.98, the cleartext
one 0.37 -> 0.33 -> 0.42. The live booster (seed 7, 3 against independent, that is 2026.11.24.9's):
thresholds 0.99 / 0.89 and openings 0.78 / 0.88 (0.99 / 0.88, 0.76 / 0.89), mining within 5 s
0.964 (0.967), within 30 s 0.995 (0.992), tunnels within 5 s 0.890 (0.890), corpus windows and
connections flagged 2 (1), lab benign sessions 12 (11); left out of training (one booster each,
the card's three), the WebSocket tunnel 0.46 (0.67), XMRig 0.84 (0.86): it keeps them
independent."""
AUGMENT_OFFSETS: dict[str, tuple[float, float]] = {"offline": (-30.0, 60.0),
                                                   "live": augment.OFFSET}
"""Per booster kind, the range of bytes `b` added to each message of a resized copy (augment.OFFSET;
negative: taken away, a message keeping at least a byte: the same messages without a TLS record
around them). With the directions' factors drawn independently, -30 to 60 helped only the
left-out cleartext reverse shell (augment.py). With them at most 3 apart (AUGMENT_RATIOS), on the
same table and measures, four seeds (7, 107, 207, 307; means), 0 to 60 -> -30 to 60: mining
threshold 0.91 -> 0.905 (0.89, 0.95, 0.88, 0.92 -> 0.89, 0.92, 0.90, 0.91); mining within 20
packets 0.952 -> 0.958 (0.919-0.965 -> 0.952-0.964), within 10 packets 0.725 -> 0.739; left out of
training, TLS mining 0.88 -> 0.90, XMRig 0.72 -> 0.75, Bitcoin 0.95 -> 0.965, Ethereum 0.96 ->
0.97, Monero 0.93 -> 0.93, Dropbear 0.895 -> 0.92, the TLS reverse shell 0.98 -> 0.99, the
cleartext one 0.42 -> 0.65; tunnel threshold 0.80 -> 0.81; corpus flows flagged 2 -> 2; but lab
benign sessions flagged whole 5 -> 7 of 2273 (independent factors, 0 to 60: 7.75). The live
booster keeps 0 to 60 (augment.py: -30 raised its tunnel thresholds)."""
NOT_WRAPPED: tuple[str, ...] = ("TLS", "SSH")
"""nDPI families (features.APP_FAMILIES) whose connections are not carried in TLS in the copies
(augment.WRAPPED): TLS connections already are; SSH connections wrapped made every synthetic SSH
in TLS look alike, benign or tunnel, and the tunnel threshold rose to 0.98 (AUGMENTED_VIEWS)."""


def fit_table(table: Table, seed: int, kind: str = "offline", members: int = MEMBERS) -> lgb.Booster:
    """A booster of `kind` on the table's trainable rows and their resized copies
    (training.augment); `offline`: all but live windows, without OFFLINE_IGNORES. The average of
    `members` boosters seeded seed, seed+1, ...; `live`, with LIVE_CLASS_IGNORES set: such an
    average per class against the rest, made one model."""
    keep = trainable(table)
    if kind == "offline":
        keep &= scored_on(table, "offline")
    t = table.subset(keep)
    rows = np.isin(t.views, AUGMENTED_VIEWS[kind])
    opens = opens_connection(t.X)
    if not AUGMENT_OPENINGS[kind]:
        rows &= ~opens
    wrap = rows & opens & ~np.isin(
        t.X[:, FEATURES.index("app_family")], [APP_FAMILIES.index(a) for a in NOT_WRAPPED])
    X, y, w = augment.augmented(t.X, t.y, weights(t.y, t.groups, t.views), seed, rows=rows,
                                wrap=wrap, ratio=AUGMENT_RATIOS[kind],
                                offset=AUGMENT_OFFSETS[kind])
    if kind == "offline":
        X = _blanked(X, OFFLINE_IGNORES)
    if kind == "live" and LIVE_CLASS_IGNORES is not None:
        return one_vs_rest([None] + [
            average([fit(_blanked(X, LIVE_CLASS_IGNORES.get(c, ())), (y == i).astype(int), w,
                         seed + m, binary=True) for m in range(members)])
            for i, c in enumerate(CLASSES) if i > 0])
    return average([fit(X, y, w, seed + i) for i in range(members)])


def predict(boosters: dict[str, lgb.Booster], table: Table, raw: bool = False) -> np.ndarray:
    """Each row scored by the booster of its kind (`raw`: before softmax)."""
    proba = np.zeros((len(table.y), len(CLASSES)))
    for kind, booster in boosters.items():
        rows = scored_on(table, kind)
        if rows.any():
            proba[rows] = booster.predict(table.X[rows], raw_score=raw)
    return proba


def session_folds(table: Table, folds: int, seed: int) -> np.ndarray:
    """Each row's fold: sessions (groups) are split, stratified by their class (a session with a
    malicious row counts as that class), never their rows. The split depends on the sessions alone,
    not on how many rows each has: a change to one view (the live windows) leaves the other views'
    folds, and so the offline booster's out-of-fold scores and thresholds, as they were."""
    groups = np.array(table.groups)
    names, inverse = np.unique(groups, return_inverse=True)
    session_class = np.zeros(len(names), dtype=np.int64)
    np.maximum.at(session_class, inverse, table.y)
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    fold_of_session = np.zeros(len(names), dtype=np.int64)
    for k, (_, test) in enumerate(cv.split(np.zeros(len(names)), session_class)):
        fold_of_session[test] = k
    return fold_of_session[inverse]


def out_of_fold(table: Table, folds: int, seed: int, repeats: int = MEMBERS) -> np.ndarray:
    """Scores of every row by boosters trained without its fold (its kind's booster), averaged
    over `repeats` fold splits seeded seed, seed+1, ... (one booster a fold, seeded as its split):
    the average, as the shipped booster's `MEMBERS`, of boosters that never saw the row's session."""
    raw = np.zeros((len(table.y), len(CLASSES)))
    for r in range(repeats):
        fold = session_folds(table, folds, seed + r)
        for k in range(folds):
            mask = fold != k
            test_idx = np.flatnonzero(~mask)
            fitted = table.subset(mask)
            boosters = {kind: fit_table(fitted, seed + r, kind, members=1) for kind in KINDS}
            raw[test_idx] += predict(boosters, table.subset(~mask), raw=True) / repeats
    return np.asarray(softmax(raw, axis=1))  # as LightGBM's multiclass objective does


THRESHOLD_DRAWS = 3
"""Out-of-fold draws the shipped thresholds are chosen on (`out_of_fold_draws`): each is
`out_of_fold` with its own fold splits and boosters, seeded seed, seed + DRAW_SEED_STEP, ...; each
threshold is the median of the draws' (`median_thresholds`). The offline mining threshold is set
by the real-world corpus's tail, a few chat flows that score close to mining out-of-fold: with one
draw it was whichever end of their spread that draw fell on (2026.11.24.12's and 2026.11.25.4's
tables, seeds 7, 107, 207 and 307: 0.90-0.94 and 0.91-0.96), and mining decided within 20
packets moved with it (0.937-0.963 and 0.875-0.956). The median is as likely to sit above as
below the next draw, and moves less from one model to the next. Metrics and curves are the first
draw's, under the shipped thresholds; `draw_summary` gives every draw's. Each draw costs one
out-of-fold pass (about 3.5 minutes on 2 cores for 2026.11.25.4's 328k rows).

2026.11.25.5 (2026.11.25.4's boosters, byte for byte) has its thresholds chosen so; its draws
(seeds 7, 107, 207) chose offline mining 0.92, 0.91, 0.91 (shipped 0.91), live later windows
0.995, 0.99, 0.99 (0.99) and tunnel 0.76, 0.79, 0.79 (0.79), live openings for mining 0.72,
0.78, 0.84 (0.78). Under the shipped ones: mining within 20 packets 0.946, 0.947, 0.950, live
within 5 s 0.974, 0.968, 0.967, corpus flows flagged 3, 2, 4 of 5355 (each draw's own thresholds
flag at most one a class on it; on another draw, more)."""
DRAW_SEED_STEP = 100
"""Seeds of successive draws are this far apart, clear of the MEMBERS splits each draw seeds."""


def out_of_fold_draws(table: Table, folds: int, seed: int,
                      draws: int = THRESHOLD_DRAWS) -> list[np.ndarray]:
    """`out_of_fold` scores of `draws` draws, seeded seed, seed + DRAW_SEED_STEP, ..."""
    return [out_of_fold(table, folds, seed + DRAW_SEED_STEP * d) for d in range(draws)]


def median_thresholds(drawn: list[Thresholds]) -> Thresholds:
    """Per kind and class, the median of the draws' thresholds (of an even number of draws, the
    higher middle one: a threshold is always one of THRESHOLD_GRID)."""
    return {kind: {c: sorted(d[kind][c] for d in drawn)[len(drawn) // 2] for c in drawn[0][kind]}
            for kind in drawn[0]}


def draw_summary(reports: list[dict[str, Any]], drawn: list[Thresholds],
                 seed: int) -> list[dict[str, Any]]:
    """Per draw: its seed, the thresholds it alone would have chosen, and from its `metrics`
    report under the shipped thresholds (verdicts as given: `as_given`) what those give."""
    out = []
    for d, (m, own) in enumerate(zip(reports, drawn, strict=True)):
        live = m.get("live") or {}
        ttd = live.get("time_to_detect") or {}
        out.append({
            "seed": seed + DRAW_SEED_STEP * d,
            "thresholds": own,
            "corpus_false_positives": m["corpus_false_positives"],
            "benign_sessions_flagged": m["per_class_sessions"]["benign"]["flagged"],
            "mining_within_20_packets": m["early"]["stratum_mining"]["by_packets_read"]
            .get("20", {}).get("recall"),
            "mining_sessions": m["per_class_sessions"]["stratum_mining"]["recall"],
            "tunnel_sessions": m["per_class_sessions"]["reverse_tunnel"]["recall"],
            **({"live_benign_sessions_flagged": live["per_class_sessions"]["benign"]["flagged"],
                "live_mining_within_5_s": ttd.get("stratum_mining", {}).get("within_s", {})
                .get("5"),
                "live_tunnels_within_30_s_of_first_use": ttd.get("reverse_tunnel", {})
                .get("since_first_use", {}).get("within_s", {}).get("30")} if live else {}),
        })
    return out


THRESHOLD_GRID = tuple(round(MIN_THRESHOLD + step / 100, 2) for step in range(50)) + (0.995, 0.999)
"""Candidate thresholds, compared exactly as stored in metadata.json."""
CORPUS_FP_BUDGET = 1 / 5000
"""Out-of-fold, a threshold may flag at most this share of the real-world benign corpus's flows."""
LAB_FP_BUDGET = 0.005
"""... and at most this share of the lab's benign look-alike flows."""


LAB_SESSION_FP_BUDGET = 0.005
"""... and, all classes together, at most this share of the lab's benign look-alike sessions may
have any flagged row: a live capture judges a session many times over, window after window."""


def choose_thresholds(proba: np.ndarray, y: np.ndarray, scenarios: list[str],
                      judgeable: np.ndarray | None = None) -> dict[str, float]:
    """Per class, the lowest threshold of THRESHOLD_GRID whose out-of-fold false positives
    stay within CORPUS_FP_BUDGET and LAB_FP_BUDGET. Out-of-fold scores are pessimistic: the model
    that scored a corpus file never saw it, while the shipped model is trained on all of them.
    Rows not `judgeable` are never flagged, whatever their score."""
    if judgeable is not None:
        proba = np.where(judgeable[:, None], proba, 0.0)
    corpus = np.array([s == "corpus" for s in scenarios], dtype=bool)
    lab_benign = (y == 0) & ~corpus
    allowed_corpus = int(CORPUS_FP_BUDGET * corpus.sum())
    out = {CLASSES[0]: 0.0}
    for c in range(1, len(CLASSES)):
        p = proba[:, c]
        t = MIN_THRESHOLD
        for cand in THRESHOLD_GRID:
            fp_corpus = (p[corpus] >= cand).sum()
            fp_lab = (p[lab_benign] >= cand).mean() if lab_benign.any() else 0.0
            t = cand
            if fp_corpus <= allowed_corpus and fp_lab <= LAB_FP_BUDGET:
                break
        out[CLASSES[c]] = t
    return out


DETECT_TARGET_S = {"stratum_mining": 5.0, "reverse_tunnel": 30.0}
"""How soon a live capture should flag a session of each class, from its connection's first packet
(the issue's targets; a tunnel's are from its first use, which comes later: this is stricter)."""


def within_session_budget(parts: list[tuple[np.ndarray, dict[str, float]]], proba: np.ndarray,
                          y: np.ndarray, scenarios: list[str], groups: list[str],
                          ends_s: np.ndarray | None = None) -> None:
    """Raise thresholds (in place) until at most LAB_SESSION_FP_BUDGET of the lab's benign
    sessions have a flagged row. Each part is a set of rows (a mask) and the thresholds they are
    held to; each step raises one threshold (of one part and class) by one grid step. `proba` is
    zero where a row is not judged. A session of a malicious scenario is not a benign session, even
    where some of its rows are.

    Without `ends_s`, each step raises the threshold that flags the most benign sessions. With it
    (seconds from each row's connection start to its verdict), each step raises the one that
    clears benign sessions at the least cost: the fewest sessions of its class no longer flagged
    within DETECT_TARGET_S per benign session cleared; where no single step clears one, as before.
    """
    g = np.array(groups)
    benign_rows = (y == 0) & (np.array(scenarios) != "corpus") & ~np.isin(g, g[y != 0])
    allowed = int(LAB_SESSION_FP_BUDGET * len(np.unique(g[benign_rows])))
    candidates = [(k, c) for k in range(len(parts)) for c in CLASSES[1:]]

    def flagged_benign(k: int, c: str, t: float) -> set[str]:
        return set(g[benign_rows & parts[k][0] & (proba[:, CLASSES.index(c)] >= t)])

    def in_time(c: str, instead: dict[int, float]) -> int:
        """Sessions of class c flagged within its target (by `ends_s`), with the parts' thresholds
        for c (those of the parts in `instead` replaced)."""
        assert ends_s is not None
        i = CLASSES.index(c)
        rows = (y == i) & (ends_s <= DETECT_TARGET_S[c])
        hit = np.zeros(len(y), dtype=bool)
        for k, (mask, thresholds) in enumerate(parts):
            hit |= rows & mask & (proba[:, i] >= instead.get(k, thresholds[c]))
        return len(np.unique(g[hit]))

    while True:
        flagged = {(k, c): flagged_benign(k, c, parts[k][1][c]) for k, c in candidates}
        union = set().union(*flagged.values())
        if len(union) <= allowed:
            return
        steps = {(k, c): min(t for t in THRESHOLD_GRID if t > parts[k][1][c])
                 for k, c in candidates if parts[k][1][c] < THRESHOLD_GRID[-1]}
        if not steps:
            return
        choice = max(steps, key=lambda key: len(flagged[key]))
        if ends_s is not None:
            now = {c: in_time(c, {}) for c in CLASSES[1:]}
            costs = {}
            for (k, c), t in steps.items():
                after = set().union(*(v for key, v in flagged.items() if key != (k, c)),
                                    flagged_benign(k, c, t))
                cleared = len(union) - len(after)
                if cleared > 0:
                    lost = now[c] - in_time(c, {k: t})
                    costs[(k, c)] = (lost / cleared, -cleared)
            if costs:
                choice = min(costs, key=lambda key: costs[key])
        k, c = choice
        parts[k][1][c] = steps[choice]


def decide(proba: np.ndarray, thresholds: dict[str, float], X: np.ndarray,
           opening: dict[str, float] | None = None) -> np.ndarray:
    """Verdicts as the shipped model gives them; `opening`: the rows are live windows, and those
    that open their connection are held to these thresholds."""
    meta = ModelMetadata("eval", CLASSES, FEATURES, thresholds, CaptureOptions(), "",
                         min_packets=MIN_JUDGED_PACKETS, opening_thresholds=opening)
    return FlowClassifier(None, meta).decide(proba, X, windows=opening is not None)[0]


Thresholds = dict[str, dict[str, float]]
"""Per booster kind, per class; and `opening`: for live windows that open their connection."""


def opening_windows(table: Table) -> np.ndarray:
    """Live windows that open their connection (they hold its SYN): judged with their own
    thresholds (LiveModel.opening_thresholds)."""
    return (np.array(table.views) == LIVE_VIEW) & opens_connection(table.X)


def draws_note(draws: int, seed: int) -> str:
    """How the thresholds were chosen, for metrics and the model card."""
    if draws <= 1:
        return "chosen on the same out-of-fold scores"
    return (f"each the median of {draws} out-of-fold draws' (seeded {seed}, "
            f"{seed + DRAW_SEED_STEP}, ...; every draw's in `draws`), metrics the first draw's")


HELD_NOTE = ("; reverse-tunnel verdicts held until their connection shows the evidence, as "
             "triage and live capture give them")


def as_given(proba: np.ndarray, table: Table) -> np.ndarray:
    """The scores as triage and live capture act on them, tunnel verdicts held: a row's
    reverse-tunnel score is zero where its connection has not shown the evidence by the row's end
    (`Table.evidence`). A table without it is returned as it is."""
    if not table.has_evidence:
        return proba
    given = proba.copy()
    given[~table.evidence, CLASSES.index("reverse_tunnel")] = 0.0
    return given


OFFLINE_SESSION_VIEW = "full"
"""The view whose sessions the offline thresholds keep within LAB_SESSION_FP_BUDGET. Before
2026.11.25.6 only the row budgets held offline, and the lab's benign sessions flagged whole were
0.8 % (20 of 2474, 2026.11.25.5's first draw, all as tunnels: push channels and MQTT keepalives,
whose keepalives are a held tunnel verdict's evidence): the offline tunnel threshold was 0.58
where the row budgets bound. 2026.11.25.6 (the same boosters and table): 0.73 (the draws 0.73,
0.74, 0.72), 13 of 2714 sessions (with a corpus file; the lab's 12 of 2474), tunnels found out of
fold as before (0.970 whole, the same on every early cut); left out of training, whole, autossh
0.97 (0.98), Dropbear 0.90 (0.91), the TLS reverse shell 0.98 (1.0), the cleartext one 0.87
(0.90)."""


def choose_all_thresholds(proba: np.ndarray, table: Table, held: bool = True) -> Thresholds:
    """Each kind's thresholds, chosen on the rows it judges; for live, apart for the windows that
    open their connection and for the rest, then together within the session budget (a live
    capture judges a session window after window, so its false alarms add up); offline, then
    within the session budget on whole captures (`OFFLINE_SESSION_VIEW`: a session's flows are
    judged together, and a session with any flagged flow is a false alarm, as metrics count it;
    its early cuts are other readings of the same session). A reverse-tunnel score counts only on
    the rows whose verdict would be given (`Table.evidence`): triage and live capture hold a
    tunnel verdict until its connection behaves as a tunnel, so a benign connection the model
    suspects but that never does is no false alarm, and a tunnel is found when it does.
    `held=False`: every tunnel score counts, as with `--eager-tunnels`."""
    out: Thresholds = {}
    if held:
        proba = as_given(proba, table)
    opening = opening_windows(table)
    scenarios = np.array(table.scenarios)
    masks = {"offline": scored_on(table, "offline"), "live": scored_on(table, "live") & ~opening,
             "opening": opening}
    for name, m in masks.items():
        out[name] = choose_thresholds(proba[m], table.y[m], list(scenarios[m]), judged(table.X[m]))
    judged_proba = np.where(judged(table.X)[:, None], proba, 0.0)
    whole = masks["offline"] & (np.array(table.views) == OFFLINE_SESSION_VIEW)
    within_session_budget([(np.ones(int(whole.sum()), dtype=bool), out["offline"])],
                          judged_proba[whole], table.y[whole], list(scenarios[whole]),
                          list(np.array(table.groups)[whole]))
    live = scored_on(table, "live")
    within_session_budget([(masks["live"][live], out["live"]), (opening[live], out["opening"])],
                          judged_proba[live], table.y[live], list(scenarios[live]),
                          list(np.array(table.groups)[live]),
                          table.ends_s[live] if len(table.ends_s) == len(table.y) else None)
    return out


def decide_all(proba: np.ndarray, thresholds: Thresholds, table: Table) -> np.ndarray:
    """Verdicts of every row, each with its kind's thresholds (and live windows that open their
    connection with the opening thresholds, where there are any)."""
    pred = np.zeros(len(table.y), dtype=np.int64)
    windows = np.array(table.views) == LIVE_VIEW
    for kind in KINDS:
        m = scored_on(table, kind)
        if kind == "live" and "opening" in thresholds:
            for rows, opening in ((m & windows, thresholds["opening"]), (m & ~windows, None)):
                if rows.any():
                    pred[rows] = decide(proba[rows], thresholds["live"], table.X[rows], opening)
        elif m.any():
            pred[m] = decide(proba[m], thresholds[kind], table.X[m])
    return pred


def metrics(table: Table, pred: np.ndarray) -> dict[str, Any]:
    """Flow and session metrics on whole captures, then recall on the early cuts of them."""
    views = np.array(table.views)
    full = views == "full"
    report = session_metrics(table.subset(full), pred[full])
    report["early"] = early_recall(table, pred)
    live = np.isin(views, LIVE_VIEWS)
    if live.any():
        first_use = table.summary.get("first_use_s")
        report["live"] = {**session_metrics(table.subset(live), pred[live]),
                          "time_to_detect": time_to_detect(
                              table.subset(live), pred[live],
                              first_use if isinstance(first_use, dict) else None)}
    return report


DETECT_WITHIN_S = (3, 5, 10, 30, 60, 120, 300)


def time_to_detect(table: Table, pred: np.ndarray,
                   first_use: dict[str, float] | None = None) -> dict[str, Any]:
    """Per class, over sessions, the share whose first flagged live row (window, or connection so
    far) was exported by nfstream within N seconds of its connection's first packet (ends_s): when
    a live capture could have given the verdict, before the 0.2 s batching, the capture clock's lag
    on a quiet link and the firewall's own delay.

    `first_use`: per session, seconds from its start to the tunnel's first use by the lab's schedule
    (dataset summary "first_use_s"). A tunnel's sessions are then also counted from their first use
    (`since_first_use`): a detection before it counts as 0 s. The connection opens at the session's
    start, so its set-up time (well under a second in the lab) is not counted there."""
    out: dict[str, Any] = {}

    def shares(arr: np.ndarray) -> dict[str, Any]:
        return {"within_s": {str(t): round(float((arr <= t).mean()), 4) if len(arr) else None
                             for t in DETECT_WITHIN_S},
                "median_s": round(float(np.median(arr)), 2) if np.isfinite(arr).any() else None}

    for c in CLASSES[1:]:
        first_s = first_flagged_s(table, pred, c)
        out[c] = {"sessions": len(first_s), **shares(np.array(list(first_s.values())))}
        use = first_use or {}
        since = np.array([max(t - use[g], 0.0) for g, t in first_s.items() if g in use])
        if len(since):
            out[c]["since_first_use"] = {"sessions": len(since), **shares(since)}
    return out


def first_flagged_s(table: Table, pred: np.ndarray, cls: str) -> dict[str, float]:
    """Per session of class `cls`: seconds from its connection's first packet to its first row
    flagged as `cls` (`ends_s`: when a verdict on the row was possible), inf if none was."""
    i = CLASSES.index(cls)
    names, session = np.unique(np.array(table.groups), return_inverse=True)
    first = np.full(len(names), np.inf)
    hit = pred == i
    np.minimum.at(first, session[hit], table.ends_s[hit])  # one pass, not one per session
    of_class = np.unique(session[table.y == i])
    return {str(names[k]): float(first[k]) for k in of_class}


def early_recall(table: Table, pred: np.ndarray) -> dict[str, Any]:
    """Per class: the share of sessions caught when only the first N seconds of the capture were
    read, and the share of flows caught by how many packets they had."""
    views = np.array(table.views)
    groups = np.array(table.groups)
    out: dict[str, Any] = {}
    for i, c in enumerate(CLASSES[1:], start=1):
        by_cut: dict[str, dict[str, Any]] = {"by_seconds_read": {}, "by_packets_read": {}}
        for view in sorted(set(table.views) - {"full", *LIVE_VIEWS}, key=lambda v: int(v[3:])):
            m = (views == view) & (table.y == i)
            ids = np.unique(groups[m])
            hit = sum((pred[m & (groups == g)] == i).any() for g in ids)
            kind = "by_seconds_read" if view.startswith("cut") else "by_packets_read"
            by_cut[kind][view[3:]] = {"sessions": len(ids), "recall": round(hit / max(len(ids), 1), 4)}
        by_packets = {}
        m = table.y == i
        for lo, hi in ((1, 10), (11, 20), (21, 50), (51, 200), (201, 10**12)):
            sel = m & (table.first_packets >= lo) & (table.first_packets <= hi)
            by_packets[f"{lo}-{hi if hi < 10**12 else 'more'}"] = {
                "flows": int(sel.sum()),
                "recall": round(float((pred[sel] == i).mean()), 4) if sel.any() else None}
        out[c] = {**by_cut, "by_flow_packets": by_packets}
    return out


def session_metrics(table: Table, pred: np.ndarray) -> dict[str, Any]:
    y = table.y
    p, r, f, n = precision_recall_fscore_support(y, pred, labels=range(len(CLASSES)), zero_division=0)
    per_class = {c: {"precision": round(float(p[i]), 4), "recall": round(float(r[i]), 4),
                     "f1": round(float(f[i]), 4), "flows": int(n[i])} for i, c in enumerate(CLASSES)}
    groups = np.array(table.groups)
    scen = np.array(table.scenarios)
    sessions: dict[str, Any] = {}
    malicious_sessions = set(groups[y != 0].tolist())
    for i, c in enumerate(CLASSES):
        ids = np.unique(groups[y == i])
        if i == 0:  # a benign session is a false alarm if any of its flows is flagged
            # (sessions of a malicious scenario are not benign sessions, even where some of their
            # flows, e.g. refused connection attempts, are labelled benign)
            ids = np.array([g for g in ids if g not in malicious_sessions])
            bad = [g for g in ids if (pred[groups == g] != 0).any()]
            sessions[c] = {"sessions": len(ids), "flagged": len(bad), "examples": bad[:10]}
        else:  # a malicious session is caught if any of its flows gets its class
            hit = [g for g in ids if (pred[groups == g] == i).any()]
            missed = sorted(set(ids) - set(hit))
            sessions[c] = {"sessions": len(ids), "detected": len(hit),
                           "recall": round(len(hit) / max(len(ids), 1), 4), "missed": missed[:10]}
    corpus = scen == "corpus"
    per_scenario = {
        s: {"flows": int((scen == s).sum()),
            "flagged_as": {c: int(((scen == s) & (pred == i)).sum()) for i, c in enumerate(CLASSES)}}
        for s in sorted(set(table.scenarios))
    }
    return {
        "per_class_flows": per_class,
        "per_class_sessions": sessions,
        "corpus_flows": int(corpus.sum()),
        "corpus_false_positives": int((pred[corpus] != 0).sum()),
        "lab_benign_flow_fpr": round(float((pred[(y == 0) & ~corpus] != 0).mean()), 5)
        if ((y == 0) & ~corpus).any() else None,
        "confusion_matrix": {"labels": list(CLASSES),
                             "matrix": confusion_matrix(y, pred, labels=range(len(CLASSES))).tolist()},
        "per_scenario": per_scenario,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=Path("training/data"),
                    help="directory of lab runs (each with capture.pcap and labels.json)")
    ap.add_argument("--corpus", type=Path, default=Path("../shared/corpus/ndpi-benign"),
                    help="real-world benign captures, read in place (skipped when absent)")
    ap.add_argument("--models", type=Path, default=Path("models"))
    ap.add_argument("--version", default=dt.date.today().strftime("%Y.%m.%d"))
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--draws", type=int, default=THRESHOLD_DRAWS,
                    help="out-of-fold draws whose median thresholds ship (1: the first draw's)")
    ap.add_argument("--table", type=Path, default=None, help="reuse/write this feature table (.npz)")
    ap.add_argument("--feedback", type=Path, default=None,
                    help="analysts' feedback (JSON Lines from the service's GET /v1/feedback)")
    ap.add_argument("--feedback-pcaps", type=Path, default=None,
                    help="where the captures named by relative paths in --feedback are")
    ap.add_argument("--no-evaluate", action="store_true",
                    help="skip training/evaluate (leave-one-scenario-out, plots, MODEL.md)")
    a = ap.parse_args(argv)
    if a.draws < 1:
        print(f"train: --draws must be 1 or more, not {a.draws}", file=sys.stderr)
        return 2
    options = CaptureOptions()
    if a.table and a.table.exists():
        table = Table.load(a.table)
    else:
        runs = sorted(p for p in a.runs.iterdir() if (p / "labels.json").is_file())
        if not runs:
            print(f"train: no lab runs under {a.runs}", file=sys.stderr)
            return 1
        busy = [r.name for r in runs
                if json.loads((r / "labels.json").read_text()).get("host_load", {}).get("overloaded")]
        if busy:
            print(f"train: warning: runs made on an overloaded machine (labels.json host_load), "
                  f"their timings suspect: {', '.join(busy)}", file=sys.stderr)
        table = build(runs, a.corpus if a.corpus.is_dir() else None, options)
        if a.table:
            table.save(a.table)
    if a.feedback:
        table = concat(table, feedback_table(a.feedback, options, a.feedback_pcaps))
    print(f"table: {table.summary.get('rows_per_class')}, sessions "
          f"{table.summary.get('sessions_per_class')}, feedback {table.summary.get('feedback_rows', 0)}",
          file=sys.stderr)
    probas = out_of_fold_draws(table, a.folds, a.seed, a.draws)
    drawn = [choose_all_thresholds(p, table) for p in probas]
    thresholds = median_thresholds(drawn)
    # without the evidence, held thresholds are eager ones: one set
    eager = (median_thresholds([choose_all_thresholds(p, table, held=False) for p in probas])
             if table.has_evidence else None)
    reports = [metrics(table, decide_all(as_given(p, table), thresholds, table)) for p in probas]
    draws = draw_summary(reports, drawn, a.seed)
    proba, report = probas[0], reports[0]  # the card's tables and curves: the first draw's
    report["evaluation"] = (f"{a.folds}-fold StratifiedKFold over capture sessions, averaged over "
                            f"{MEMBERS} splits seeded from {a.seed}; thresholds: "
                            + draws_note(len(probas), a.seed) + (HELD_NOTE if table.has_evidence else ""))
    report["draws"] = draws
    out = a.models / a.version
    out.mkdir(parents=True, exist_ok=True)
    fit_table(table, a.seed, "offline").save_model(str(out / MODEL_FILE))
    fit_table(table, a.seed, "live").save_model(str(out / LIVE_MODEL_FILE))
    summary = {k: v for k, v in table.summary.items() if k not in ("files_sha256", "first_use_s")}
    live = LiveModel(LIVE_MODEL_FILE, sha256_file(out / LIVE_MODEL_FILE), thresholds["live"],
                     live_options(options), thresholds["opening"])
    meta = ModelMetadata(
        version=a.version, classes=CLASSES, features=FEATURES, thresholds=thresholds["offline"],
        capture=options,
        model_sha256=sha256_file(out / MODEL_FILE),
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        training_data=summary,
        library_versions={"lightgbm": lgb.__version__, "numpy": np.__version__,
                          "scikit-learn": sklearn.__version__, "python": platform.python_version(),
                          **library_versions()},
        params={**PARAMS, "rounds": ROUNDS, "seed": a.seed, "members": MEMBERS,
                "threshold_draws": len(probas),
                "live_class_ignores": LIVE_CLASS_IGNORES,
                "tunnel_thresholds": "held" if table.has_evidence else "eager",
                "augment": {"copies": augment.COPIES, "scale": list(augment.SCALE),
                            "offset": {k: list(v) for k, v in AUGMENT_OFFSETS.items()},
                            "ratio": AUGMENT_RATIOS,
                            "views": AUGMENTED_VIEWS,
                            "openings": AUGMENT_OPENINGS, "wrapped": augment.WRAPPED,
                            "not_wrapped": list(NOT_WRAPPED),
                            "handshake": {"client_hello": list(augment.CLIENT_HELLO),
                                          "server_flight": list(augment.SERVER_FLIGHT),
                                          "client_finished": list(augment.CLIENT_FINISHED),
                                          "server_finished": list(augment.SERVER_FINISHED),
                                          "ack_each_segment": augment.ACK_EACH_SEGMENT},
                            "whole_values": True}},
        min_packets=MIN_JUDGED_PACKETS,
        live=live,
        eager_thresholds=eager,
    )
    (out / "metadata.json").write_text(json.dumps(meta.to_dict(), indent=2) + "\n")
    (out / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    (a.models / "CURRENT").write_text(a.version + "\n")
    FlowClassifier.load(out)  # the written model must pass its own checks
    FlowClassifier.load(out, live=True)
    if not a.no_evaluate:
        from training import evaluate

        report = evaluate.run(table, out, a.folds, a.seed, proba, draws)
    print(json.dumps({k: report[k] for k in ("per_class_flows", "per_class_sessions",
                                              "corpus_false_positives", "lab_benign_flow_fpr")},
                     indent=1))
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
