"""The training pipeline on the sample captures: labels → table → grouped CV → a loadable model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy.special import softmax

from flowguard.capture import CaptureOptions, live_options
from flowguard.features import APP_FAMILIES, FEATURES, opens_connection
from flowguard.model import CLASSES, FlowClassifier
from flowguard.pcapfile import inspect_capture
from tests.conftest import PCAPS
from training import augment, train
from training.dataset import Table, build, cut_capture, label_run
from training.ensemble import average, one_vs_rest


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Each sample capture as a one-session lab run directory."""
    root = tmp_path_factory.mktemp("runs")
    out = []
    for pcap in sorted(PCAPS.glob("*.pcap")):
        meta = json.loads(pcap.with_suffix(".labels.json").read_text())
        run = root / pcap.stem
        run.mkdir()
        shutil.copy(pcap, run / "capture.pcap")
        labels = {"capture": "capture.pcap", "sessions": meta["sessions"],
                  "conversations": meta["conversations"]}
        (run / "labels.json").write_text(json.dumps(labels))
        out.append(run)
    return out


def test_labels_match_every_flow_of_a_sample(runs: list[Path]) -> None:
    for run in runs:
        flows, tags, skipped = label_run(run, CaptureOptions())
        assert flows and not skipped
        assert {t[0] for t in tags} <= set(CLASSES)


def test_cut_capture_keeps_the_first_seconds(tmp_path: Path) -> None:
    src = PCAPS / "mining-btc-clear-3333.pcap"
    dst = tmp_path / "cut.pcap"
    cut_capture(src, dst, 30)
    whole, cut = inspect_capture(src), inspect_capture(dst)
    assert cut.complete and 0 < cut.packets < whole.packets


def test_weights_balance_classes_and_sessions() -> None:
    y = np.array([0, 0, 0, 1, 1, 2])
    groups = ["a", "a", "b", "c", "d", "e"]
    w = train.weights(y, groups)
    totals = [w[y == c].sum() for c in range(3)]
    np.testing.assert_allclose(totals, totals[0])
    assert w[0] == w[1] and w[0] + w[1] == pytest.approx(w[2])


def test_weights_give_the_corpus_its_share_of_benign() -> None:
    """The real-world corpus's captures weigh CORPUS_SHARE of the benign class together, however
    few they are beside the lab's benign sessions; classes still weigh the same."""
    y = np.array([0, 0, 0, 0, 0, 1, 2])
    groups = ["lab-a", "lab-b", "lab-c", "lab-d", "corpus/x.pcap", "m", "t"]
    w = train.weights(y, groups)
    corpus = np.array([g.startswith("corpus/") for g in groups])
    assert w[corpus].sum() == pytest.approx(train.CORPUS_SHARE * w[y == 0].sum())
    assert w[0] == pytest.approx(w[3])  # lab sessions still weigh the same
    np.testing.assert_allclose([w[y == c].sum() for c in range(3)], w[y == 0].sum())
    lab_only = train.weights(y[:4], groups[:4])  # no corpus: nothing to share
    np.testing.assert_allclose(lab_only, 1.0)


def test_weights_give_live_windows_half_of_their_session() -> None:
    y = np.array([1, 1, 1, 1, 1, 1])
    groups = ["a", "a", "a", "a", "a", "b"]
    views = ["full", "live", "live", "live", "live", "full"]
    w = train.weights(y, groups, views)
    assert w[0] == pytest.approx(w[1:5].sum())  # session a: its one whole row, its four windows
    assert w[5] == pytest.approx(w[:5].sum())  # sessions weigh the same


def test_thresholds_keep_corpus_clean() -> None:
    proba = np.array([[0.1, 0.9, 0.0], [0.4, 0.6, 0.0], [0.2, 0.0, 0.8], [0.3, 0.7, 0.0]])
    y = np.array([1, 0, 2, 1])
    t = train.choose_thresholds(proba, y, ["lab", "corpus", "lab", "lab"])
    assert t["stratum_mining"] > 0.6  # the corpus flow at 0.6 must not pass
    assert t["reverse_tunnel"] == 0.5


def test_median_thresholds_take_each_thresholds_middle_draw() -> None:
    def drawn(mining: float, tunnel: float, live: float) -> train.Thresholds:
        return {"offline": {"benign": 0.0, "stratum_mining": mining, "reverse_tunnel": tunnel},
                "live": {"benign": 0.0, "stratum_mining": live, "reverse_tunnel": 0.9}}

    three = [drawn(0.95, 0.6, 0.99), drawn(0.91, 0.8, 0.995), drawn(0.93, 0.5, 0.999)]
    assert train.median_thresholds(three) == drawn(0.93, 0.6, 0.995)  # each on its own
    # of an even number, the higher middle: always a threshold some draw chose
    assert train.median_thresholds(three[:2]) == drawn(0.95, 0.8, 0.995)
    assert train.median_thresholds(three[:1]) == three[0]


def test_train_refuses_no_draws(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert train.main(["--runs", str(tmp_path), "--draws", "0"]) == 2
    assert "--draws must be 1 or more" in capsys.readouterr().err


def test_train_writes_a_model_that_loads(runs: list[Path], tmp_path: Path) -> None:
    runs_dir = runs[0].parent
    rc = train.main(["--runs", str(runs_dir), "--corpus", str(tmp_path / "none"), "--models",
                     str(tmp_path / "models"), "--version", "test-1", "--folds", "2"])
    assert rc == 0
    model = FlowClassifier.load(tmp_path / "models" / "test-1")
    meta = model.metadata
    assert meta.version == "test-1"
    assert meta.training_data["rows"] > 0 and len(meta.training_data["data_sha256"]) == 64
    assert meta.params["members"] == train.MEMBERS  # each booster an average (training.ensemble)
    assert meta.params["live_class_ignores"] == {"stratum_mining": ["app_family", "app_guessed"]}
    assert (tmp_path / "models" / "CURRENT").read_text().strip() == "test-1"
    live = FlowClassifier.load(tmp_path / "models" / "test-1", live=True).metadata
    assert live.opening_thresholds is not None and set(live.opening_thresholds) == set(CLASSES)
    splits = dict(zip(FEATURES, model.booster.feature_importance("split"), strict=True))
    assert all(splits[name] == 0 for name in train.OFFLINE_IGNORES)  # nDPI's label: not offline
    metrics = json.loads((tmp_path / "models" / "test-1" / "metrics.json").read_text())
    assert "StratifiedKFold over capture sessions" in metrics["evaluation"]
    assert set(metrics["per_class_sessions"]) == set(CLASSES)
    # the thresholds are the median of the out-of-fold draws', every draw's recorded
    draws = metrics["draws"]
    assert meta.params["threshold_draws"] == train.THRESHOLD_DRAWS == len(draws)
    assert [d["seed"] for d in draws] == [7 + train.DRAW_SEED_STEP * d for d in range(len(draws))]
    assert train.median_thresholds([d["thresholds"] for d in draws])["offline"] == meta.thresholds
    assert all(d["mining_within_20_packets"] is not None and "live_mining_within_5_s" in d
               for d in draws)
    live = FlowClassifier.load(tmp_path / "models" / "test-1", live=True)  # the second booster
    assert live.metadata.capture.idle_timeout < meta.capture.idle_timeout
    assert live.metadata.capture == live_options(meta.capture)  # the windows it learned from
    assert set(metrics["live"]["time_to_detect"]) == set(CLASSES[1:])
    # the three tunnel samples have a scheduled first use: also counted from it
    since_use = metrics["live"]["time_to_detect"]["reverse_tunnel"]["since_first_use"]
    assert since_use["sessions"] == 3
    assert "first_use_s" not in meta.training_data  # per session: kept out of the metadata
    aug = meta.params["augment"]  # the copies it learnt from, recorded and on the card
    assert aug["wrapped"] == 2 and aug["not_wrapped"] == list(train.NOT_WRAPPED)
    card = (tmp_path / "models" / "test-1" / "MODEL.md").read_text()
    assert "TLS wrapping" in card and "ClientHello 200-650 bytes" in card
    # drawn values whole where nfstream's are, and the client's acknowledgements: on the card too
    assert aug["whole_values"] and aug["handshake"]["ack_each_segment"] == augment.ACK_EACH_SEGMENT
    assert "whole bytes, as nfstream reports them" in card
    assert f"in {augment.ACK_EACH_SEGMENT:.0%} of them the client acknowledges each" in card
    assert meta.params["tunnel_thresholds"] == "held"
    # and a second set for --eager-tunnels, chosen where every tunnel score counts: on the card
    assert meta.eager_thresholds is not None and set(meta.eager_thresholds) == {"offline", "live",
                                                                                "opening"}
    assert "`--eager-tunnels` judges with thresholds chosen" in card
    # its figures count tunnel verdicts as given (held), and the card gives the eager ones too
    assert train.HELD_NOTE in metrics["evaluation"]
    assert "With `--eager-tunnels` and its own thresholds: corpus" in card
    assert "## Out-of-fold draws" in card and f"| {draws[-1]['seed']} | " in card
    from training import evaluate  # the card written again from evaluation.json alone

    (tmp_path / "models" / "test-1" / "MODEL.md").unlink()
    assert evaluate.main(["--model", str(tmp_path / "models" / "test-1"), "--card-only"]) == 0
    assert (tmp_path / "models" / "test-1" / "MODEL.md").read_text() == card
    eager = FlowClassifier.load(tmp_path / "models" / "test-1", live=True, eager_tunnels=True)
    assert eager.metadata.thresholds == meta.eager_thresholds["live"]


def test_time_to_detect_counts_tunnels_from_their_first_use_too() -> None:
    """Sessions a (flagged at 40 s, first used at 25 s), b (flagged at 2 s, used at 10 s: before
    its use counts as 0 s), c (never flagged), d (no schedule known: only from its connection)."""
    from training.dataset import Table
    from training.lab.scenarios import first_use_s

    groups = ["a", "a", "b", "c", "d"]
    y = np.array([2, 2, 2, 2, 2])
    pred = np.array([0, 2, 2, 0, 2])
    table = Table(np.zeros((5, len(FEATURES)), dtype=np.float32), y, groups, ["s"] * 5, ["r"] * 5,
                  np.ones(5, dtype=np.int64), ["live"] * 5, np.zeros(5, dtype=np.int32),
                  ends_s=np.array([3.0, 40.0, 2.0, 9.0, 12.0]))
    out = train.time_to_detect(table, pred, {"a": 25.0, "b": 10.0, "c": 3.0})["reverse_tunnel"]
    assert out["sessions"] == 4 and out["within_s"]["30"] == 0.5  # b and d; a came at 40 s
    since = out["since_first_use"]
    assert since["sessions"] == 3
    assert since["within_s"]["3"] == round(1 / 3, 4)  # b
    assert since["within_s"]["30"] == round(2 / 3, 4)  # a at 15 s; c never
    ssh = {"label": "reverse_tunnel", "params": {"tool": "ssh", "idle_before": 15, "uses": []}}
    assert first_use_s(ssh) == 18.0  # the SSH tunnels settle 3 s first
    idle_first = {"label": "reverse_tunnel",
                  "params": {"idle_before": 15, "uses": [["idle", 40.5], ["shell", 30], ["idle", 9]]}}
    assert first_use_s(idle_first) == 58.5  # an idle step is no use
    assert first_use_s({"label": "reverse_tunnel", "params": {"port": 443}}) == 0.0
    assert first_use_s({"label": "stratum_mining", "params": {}}) is None


def test_mining_sessions_that_mined_nothing_are_left_out_of_training(
        runs: list[Path], tmp_path: Path) -> None:
    """A mining session whose pool accepted no share (its `pool` account in labels.json) is listed
    in the table's summary; training leaves its rows out, evaluation keeps them, and so does a
    subset of the table. A session without an account (runs made before the lab kept them) and
    one with a share accepted are trained on."""
    chosen = {}
    for name, accepted in (("mining-xmr-clear-80", 0), ("mining-btc-clear-3333", 3),
                           ("https-curl-443", None)):
        run = tmp_path / name
        shutil.copytree(next(r for r in runs if r.name == name), run)
        labels = json.loads((run / "labels.json").read_text())
        if accepted is not None:
            for session in labels["sessions"]:
                session["pool"] = {"connections": 1, "jobs": 9, "accepted": accepted, "rejected": 0}
        (run / "labels.json").write_text(json.dumps(labels))
        chosen[name] = run
    plain = build([next(r for r in runs if r.name == "mining-xmr-clear-80")], None, CaptureOptions())
    assert plain.summary["unmined_sessions"] == [] and train.trainable(plain).sum() > 0
    table = build(list(chosen.values()), None, CaptureOptions())
    idle = "sample-2-mining-xmr-clear-80"
    assert table.summary["unmined_sessions"] == [idle]
    groups = np.array(table.groups)
    keep = train.trainable(table)
    assert not keep[groups == idle].any()
    assert keep[(groups != idle) & train.judged(table.X)].all()  # the other sessions: every row
    assert (table.y[groups == idle] == CLASSES.index("stratum_mining")).any()  # still evaluated
    sub = table.subset(np.array(table.views) == "full")
    np.testing.assert_array_equal(train.trainable(sub), keep[np.array(table.views) == "full"])


def test_table_round_trip(runs: list[Path], tmp_path: Path) -> None:
    from training.dataset import Table

    table = build(runs[:2], None, CaptureOptions())
    table.save(tmp_path / "t.npz")
    again = Table.load(tmp_path / "t.npz")
    np.testing.assert_array_equal(again.X, table.X)
    assert again.groups == table.groups and again.views == table.views


def test_feedback_becomes_training_rows(tmp_path: Path) -> None:
    """An analyst's correction, exported by the service, is read back as a labelled row."""
    from flowguard.model import FlowClassifier, default_model_dir
    from flowguard.triage import triage
    from training.dataset import feedback_table

    pcap = PCAPS / "websocket-tls-8443.pcap"
    verdicts = [v for ev in triage([pcap], FlowClassifier.load(default_model_dir()))
                if isinstance(ev, list) for v in ev]
    lines = []
    for i, v in enumerate(verdicts):
        record = {**v.to_dict(), "verdict_id": i, "feedback_id": 100 + i, "label": "false_positive",
                  "true_class": "benign"}
        lines.append(json.dumps(record))
    lines.append(json.dumps({**record, "pcap": "live:eth1", "feedback_id": 999}))  # not at hand
    fb = tmp_path / "feedback.jsonl"
    fb.write_text("\n".join(lines) + "\n")
    table = feedback_table(fb, CaptureOptions())
    assert len(table.y) == len(verdicts) and set(table.y.tolist()) == {0}
    assert table.groups[0] == "feedback/100"
    assert table.summary["feedback_skipped"] == {"capture not at hand": 1}


def test_live_thresholds_keep_benign_sessions_within_budget() -> None:
    """One window in 200 of a benign session scores 0.7: within the row budget, but it flags one of
    two benign sessions, so with sessions given the threshold must pass it."""
    n = 200
    proba = np.tile([0.9, 0.1, 0.0], (n + 1, 1))
    proba[0] = [0.3, 0.7, 0.0]
    proba[n] = [0.05, 0.95, 0.0]  # the miner
    y = np.array([0] * n + [1])
    groups = ["benign-a"] * 100 + ["benign-b"] * 100 + ["miner"]
    scenarios = ["lab"] * (n + 1)
    assert train.choose_thresholds(proba, y, scenarios)["stratum_mining"] <= 0.7
    with_sessions = train.choose_thresholds(proba, y, scenarios)
    train.within_session_budget([(np.ones(n + 1, dtype=bool), with_sessions)], proba, y, scenarios,
                                groups)
    assert 0.7 < with_sessions["stratum_mining"] <= 0.95


def test_tunnel_thresholds_count_only_verdicts_that_would_be_given() -> None:
    """One benign connection in 100 scores 0.95 as a tunnel, live: over the session budget, so the
    threshold must pass it; unless that connection never behaves as a tunnel (no evidence), when
    its verdict would be held for good and is no false alarm."""
    n = 100
    X = np.zeros((n + 1, len(FEATURES)), dtype=np.float32)
    X[:, FEATURES.index("packets")] = 10
    proba = np.tile([0.95, 0.0, 0.05], (n + 1, 1))
    proba[0] = [0.05, 0.0, 0.95]
    proba[n] = [0.02, 0.0, 0.98]  # the tunnel
    y = np.array([0] * n + [2], dtype=np.int32)

    def live_threshold(evidence: np.ndarray, held: bool = True) -> float:
        table = Table(X, y, [f"benign-{i}" for i in range(n)] + ["tunnel"], ["lab"] * (n + 1),
                      ["run"] * (n + 1), np.full(n + 1, 10), ["live-connection"] * (n + 1),
                      np.zeros(n + 1, dtype=np.int32), {}, np.full(n + 1, 10.0), evidence)
        return train.choose_all_thresholds(proba, table, held)["live"]["reverse_tunnel"]

    assert live_threshold(np.ones(n + 1, dtype=bool)) > 0.95
    assert live_threshold(np.array([False] + [True] * n)) <= 0.95
    assert live_threshold(np.empty(0, dtype=bool)) > 0.95  # a table without it: every row counts
    # for --eager-tunnels every verdict is given: the benign connection counts, evidence or not
    assert live_threshold(np.array([False] + [True] * n), held=False) > 0.95


def test_offline_thresholds_keep_whole_benign_sessions_within_budget() -> None:
    """Ten of 200 benign sessions have a flow that scores 0.7 as a tunnel (one of them 0.8):
    within the row budget (ten of their 2000 flows), but on whole captures ten sessions, over
    the session budget (one in 200); the threshold must pass 0.7, and need not pass 0.8."""
    n = 200
    rows = 10 * n + 1
    X = np.zeros((rows, len(FEATURES)), dtype=np.float32)
    X[:, FEATURES.index("packets")] = 10
    proba = np.tile([0.95, 0.0, 0.05], (rows, 1))
    proba[0 : 100 : 10] = [0.3, 0.0, 0.7]
    proba[0] = [0.2, 0.0, 0.8]
    proba[-1] = [0.02, 0.0, 0.98]  # the tunnel
    y = np.array([0] * (10 * n) + [2], dtype=np.int32)
    groups = [f"benign-{i // 10}" for i in range(10 * n)] + ["tunnel"]
    assert train.choose_thresholds(proba, y, ["lab"] * rows)["reverse_tunnel"] <= 0.7

    def offline(view: str) -> float:
        table = Table(X, y, groups, ["lab"] * rows, ["run"] * rows, np.full(rows, 10),
                      [view] * rows, np.zeros(rows, dtype=np.int32), {}, np.full(rows, 10.0),
                      np.ones(rows, dtype=bool))
        return train.choose_all_thresholds(proba, table)["offline"]["reverse_tunnel"]

    assert 0.7 < offline(train.OFFLINE_SESSION_VIEW) <= 0.8
    assert offline("cut60") <= 0.7  # an early cut: the row budgets alone


def test_scores_as_given_hold_only_tunnel_scores_without_evidence() -> None:
    n = 3
    X = np.zeros((n, len(FEATURES)), dtype=np.float32)
    proba = np.tile([0.1, 0.3, 0.6], (n, 1))

    def table(evidence: np.ndarray) -> Table:
        return Table(X, np.zeros(n, dtype=np.int32), ["a", "b", "c"], ["lab"] * n, ["run"] * n,
                     np.full(n, 10), ["live"] * n, np.zeros(n, dtype=np.int32), {},
                     np.full(n, 10.0), evidence)

    given = train.as_given(proba, table(np.array([True, False, True])))
    np.testing.assert_array_equal(given[:, 2], [0.6, 0.0, 0.6])
    np.testing.assert_array_equal(given[:, :2], proba[:, :2])  # mining is never held
    assert proba[1, 2] == 0.6  # the caller's scores are left as they were
    assert train.as_given(proba, table(np.empty(0, dtype=bool))) is proba  # nothing recorded


def test_session_budget_raises_the_threshold_that_costs_fewest_detections() -> None:
    """Two benign sessions in 200 score 0.72 as mining, one in opening windows and one in later
    windows; the budget allows one. A miner is flagged within 5 s only by its opening window, at
    0.72: given the rows' times, the later windows' threshold is raised instead of the opening's."""
    n = 200
    proba = np.tile([0.9, 0.1, 0.0], (n + 1, 1))
    proba[[0, 1, n]] = [0.28, 0.72, 0.0]
    y = np.array([0] * n + [1])
    groups = [f"benign-{i}" for i in range(n)] + ["miner"]
    scenarios = ["lab"] * (n + 1)
    opening = np.zeros(n + 1, dtype=bool)
    opening[[0, n]] = True  # benign-0 and the miner: opening windows; benign-1: a later window
    ends = np.full(n + 1, 60.0)
    ends[n] = 2.0

    def thresholds_after(ends_s: np.ndarray | None) -> tuple[float, float]:
        start = {"benign": 0.0, "stratum_mining": 0.72, "reverse_tunnel": 0.9}
        parts = [(opening, dict(start)), (~opening, dict(start))]
        train.within_session_budget(parts, proba, y, scenarios, groups, ends_s)
        return parts[0][1]["stratum_mining"], parts[1][1]["stratum_mining"]

    assert thresholds_after(None) == (0.73, 0.72)  # the first of two equal steps: the miner lost
    assert thresholds_after(ends) == (0.72, 0.73)  # the step that loses no detection


def _toy_boosters(seeds: tuple[int, ...], features: int = 6) -> tuple[np.ndarray, list]:
    import lightgbm as lgb

    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, features))
    X[:, 3] = rng.integers(0, 5, len(X))  # a categorical column, as app_family is
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1)
    params = {**train.PARAMS, "min_data_in_leaf": 20}
    boosters = [lgb.train({**params, "seed": s}, lgb.Dataset(X, y, categorical_feature=[3]), 15)
                for s in seeds]
    return X, boosters


def test_average_of_boosters_predicts_and_explains_their_mean() -> None:
    X, boosters = _toy_boosters((1, 2, 3))
    merged = average(boosters)
    assert merged.num_trees() == sum(b.num_trees() for b in boosters)
    raw = np.mean([b.predict(X, raw_score=True) for b in boosters], axis=0)
    assert np.abs(merged.predict(X, raw_score=True) - raw).max() < 1e-9
    assert np.abs(merged.predict(X) - softmax(raw, axis=1)).max() < 1e-9
    contrib = merged.predict(X[:40], pred_contrib=True)
    mean_contrib = np.mean([b.predict(X[:40], pred_contrib=True) for b in boosters], axis=0)
    assert np.abs(contrib - mean_contrib).max() < 1e-9
    # the seeds differ, so the members do: the average is not just one of them
    assert np.abs(boosters[0].predict(X, raw_score=True) - raw).max() > 1e-3


def test_average_refuses_boosters_of_other_features() -> None:
    _, six = _toy_boosters((1,))
    _, seven = _toy_boosters((2,), features=7)
    with pytest.raises(ValueError, match="differ"):
        average(six + seven)
    with pytest.raises(ValueError, match="no boosters"):
        average([])


def test_one_vs_rest_scores_each_class_by_its_own_booster(tmp_path: Path) -> None:
    """Binary boosters (each may go without some features) make one multiclass model: raw scores
    0 for benign and each booster's for its class, explained by that booster's trees alone; it
    passes the model checks, and the compiled predictor gives the same probabilities."""
    import lightgbm as lgb

    from flowguard.compiled import compile_model
    from flowguard.modeltext import check_model_text

    rng = np.random.default_rng(0)
    X = rng.normal(size=(1500, 6))
    X[:, 3] = rng.integers(0, 5, len(X))
    y = (X[:, 0] > 0.3).astype(int) + 2 * ((X[:, 1] > 0.8) & (X[:, 0] <= 0.3))
    params = {k: v for k, v in train.PARAMS.items() if k != "num_class"}

    def binary(cls: int, blank: int | None) -> lgb.Booster:
        Xc = X.copy()
        if blank is not None:
            Xc[:, blank] = np.nan  # as LIVE_CLASS_IGNORES does
        return average([lgb.train({**params, "objective": "binary", "seed": s},
                                  lgb.Dataset(Xc, (y == cls).astype(int), categorical_feature=[3]), 12)
                        for s in (1, 2)])

    mining, tunnel = binary(1, blank=3), binary(2, blank=None)
    merged = one_vs_rest([None, mining, tunnel])
    raw = np.column_stack([np.zeros(len(X)), mining.predict(X, raw_score=True),
                           tunnel.predict(X, raw_score=True)])
    assert np.abs(merged.predict(X, raw_score=True) - raw).max() < 1e-9
    assert np.abs(merged.predict(X) - softmax(raw, axis=1)).max() < 1e-9
    contrib = merged.predict(X[:40], pred_contrib=True).reshape(40, 3, 7)
    assert np.abs(contrib[:, 1] - mining.predict(X[:40], pred_contrib=True)).max() < 1e-9
    assert np.abs(contrib[:, 0]).max() == 0 and np.abs(contrib[:, 1, 3]).max() == 0
    text = merged.model_to_string()
    assert check_model_text(text, "model.txt", 6, 3) == 3 * mining.num_trees()
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    compiled = compile_model(text, "0" * 64, 3, 6, tmp_path / "model.txt", cache)
    assert np.abs(compiled.predict(X) - merged.predict(X)).max() < 1e-9
    with pytest.raises(ValueError, match="binary"):
        one_vs_rest([None, *_toy_boosters((1,))[1]])
    with pytest.raises(ValueError, match="numbers of trees"):
        one_vs_rest([None, mining, average([tunnel, tunnel, tunnel])])


def test_a_connection_so_far_keeps_its_label_after_a_window_of_bare_acks(runs: list[Path]) -> None:
    """A live window with no payload (bare ACKs) is benign, but the connection so far that it
    ends still carries its session's mining or tunnel: its row keeps the session's label."""
    table = build(runs, None, CaptureOptions())
    views = np.array(table.views)
    payload = table.X[:, FEATURES.index("bytes")] > 0
    malicious = np.array([s.startswith(("mining", "reverse")) for s in table.scenarios])
    bare = (views == "live") & ~payload & malicious
    assert bare.any() and (table.y[bare] == 0).all()  # the samples have such windows
    so_far = (views == "live-connection") & payload & malicious
    assert so_far.any() and (table.y[so_far] != 0).all()


def test_boosters_learn_from_resized_copies_of_the_rows_chosen(
        runs: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """training.augment wired into fit_table: the offline booster sees each whole-capture and
    cut-in-seconds row and COPIES copies of it with other message sizes, but its first-packets rows
    only as they are, and of its rows that open their connection (but not in TLS or SSH,
    train.NOT_WRAPPED) the last WRAPPED copies are also carried in TLS; the live booster copies
    its live windows and connections so far that do not hold their connection's SYN, never a
    window that opens its connection."""
    from training import augment
    table = build([r for r in runs if r.name in ("mining-btc-clear-3333", "https-curl-443",
                                                 "reverse-ssh-443-shell")], None,
                  CaptureOptions())
    seen: list[tuple[np.ndarray, np.ndarray]] = []
    real_fit = train.fit

    def fit(X: np.ndarray, y: np.ndarray, w: np.ndarray, seed: int, binary: bool = False):  # type: ignore[no-untyped-def]
        seen.append((X, w))
        return real_fit(X, y, w, seed, binary)

    monkeypatch.setattr(train, "fit", fit)
    views = np.array(table.views)
    keep = train.trainable(table)
    for kind in train.KINDS:
        seen.clear()
        train.fit_table(table, 7, kind, members=1)
        rows = keep & train.scored_on(table, "offline") if kind == "offline" else keep
        copied = rows & np.isin(views, train.AUGMENTED_VIEWS[kind])
        if kind == "live":
            copied &= ~opens_connection(table.X)
            assert not copied[train.opening_windows(table)].any()
        else:
            assert not np.isin(views[copied], ["pkt10", "pkt20", "pkt50"]).any()
        assert copied.any() and (rows & ~copied).any()
        X, w = seen[0]
        assert len(X) == rows.sum() + augment.COPIES * copied.sum()
        assert np.isclose(w.sum(), rows.sum())  # copies share their row's weight
        copies = X[rows.sum():]
        size = [i for i, f in enumerate(FEATURES) if f.endswith(("_size", "_ps"))]
        timing = [i for i, f in enumerate(FEATURES) if f.endswith("_ms") or f == "duration_s"]
        packets = FEATURES.index("packets")
        tls = (opens_connection(table.X) & ~np.isin(
            table.X[:, FEATURES.index("app_family")],
            [APP_FAMILIES.index(a) for a in train.NOT_WRAPPED]))[copied]
        assert tls.any() if kind == "offline" else not tls.any()
        for k in range(augment.COPIES if copied.any() else 0):
            part = copies[k * copied.sum():(k + 1) * copied.sum()]
            original = X[:rows.sum()][copied[rows]]
            carried = tls if k >= augment.COPIES - augment.WRAPPED else np.zeros_like(tls)
            np.testing.assert_array_equal(part[~carried][:, timing], original[~carried][:, timing])
            np.testing.assert_array_equal(part[~carried, packets], original[~carried, packets])
            # carried in TLS: a handshake more before the first message, where one comes after
            # the TCP handshake among the first packets
            first = original[:, [FEATURES.index(f"pkt{i:02d}_size") for i in range(1, 21)]]
            talks = (np.nan_to_num(first) != 0).any(1)
            opens = talks & ((np.nan_to_num(first) != 0).argmax(1) >= 3)
            assert (carried & opens).any() or not carried.any()
            assert (part[carried & opens, packets] > original[carried & opens, packets]).all()
            np.testing.assert_array_equal(part[carried & ~opens, packets],
                                          original[carried & ~opens, packets])
            assert not np.allclose(np.nan_to_num(part[:, size]), np.nan_to_num(original[:, size]))


def test_compare_reads_variants_and_refuses_what_it_cannot_change() -> None:
    from training import compare

    assert compare.parse_variant("leaves7:num_leaves=7,rounds=160,extra_trees=true,metric=auc") == (
        "leaves7", {"num_leaves": 7, "rounds": 160, "extra_trees": True, "metric": "auc"})
    for text, words in (("leaves7", "NAME:KEY=VALUE"), ("x:num_leaves", "NAME:KEY=VALUE"),
                        ("x:objective=binary", "objective cannot be changed"),
                        ("x:rounds=0", "rounds must be a whole number"),
                        ("x:rounds=1.5", "rounds must be a whole number")):
        with pytest.raises(ValueError, match=words):
            compare.parse_variant(text)


def test_compare_cli_names_the_option_at_fault(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from training import compare

    table = tmp_path / "t.npz"
    table.write_bytes(b"")
    assert compare.main(["--table", str(table), "--families", "tls-mining,nope"]) == 2
    err = capsys.readouterr().err
    assert "--families: unknown nope" in err and "tunnel-dropbear" in err  # the allowed ones
    assert compare.main(["--table", str(tmp_path / "none.npz")]) == 2
    assert "--table: no such file" in capsys.readouterr().err
    assert compare.main(["--table", str(table), "--no-current"]) == 2
    assert "--variant: none given" in capsys.readouterr().err


def test_compare_trains_each_variant_with_its_parameters(runs: list[Path], tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """A variant's boosters have its rounds and leaves; training's parameters are as they were
    afterwards; the current parameters and the variant come out side by side, with the families
    left out."""
    from training import compare

    before = (dict(train.PARAMS), train.ROUNDS)
    with compare.parameters({"num_leaves": 3, "rounds": 4}):
        X = np.random.default_rng(0).normal(size=(200, len(FEATURES)))
        X[:, FEATURES.index("app_family")] = 0  # a category
        y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 1).astype(int)
        booster = train.fit(X, y, np.ones(len(y)), seed=1)
        assert booster.num_trees() == 4 * len(CLASSES)
        assert max(booster.dump_model()["tree_info"], key=lambda t: t["num_leaves"])["num_leaves"] <= 3
    assert (train.PARAMS, train.ROUNDS) == before  # restored
    table = build(runs, None, CaptureOptions())
    table.save(tmp_path / "t.npz")
    out = tmp_path / "figures.json"
    assert compare.main(["--table", str(tmp_path / "t.npz"), "--folds", "2",
                         "--variant", "small:num_leaves=3,rounds=10", "--families", "tls-mining",
                         "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("| | current | small |")
    assert "| left out: tls-mining | " in printed and "| mining within 10 / 20 packets | " in printed
    figures = json.loads(out.read_text())
    assert list(figures) == ["current", "small"]
    assert figures["small"]["changes"] == {"num_leaves": 3, "rounds": 10}
    for result in figures.values():
        assert set(result["thresholds"]) == {"offline", "live", "opening"}
        assert result["left_out"]["tls-mining"]["full"] is not None  # the sample's TLS miner
    assert (train.PARAMS, train.ROUNDS) == before
