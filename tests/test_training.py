"""The training pipeline on the sample captures: labels → table → grouped CV → a loadable model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from flowguard.capture import CaptureOptions
from flowguard.features import FEATURES
from flowguard.model import CLASSES, FlowClassifier
from flowguard.pcapfile import inspect_capture
from tests.conftest import PCAPS
from training import train
from training.dataset import build, cut_capture, label_run


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


def test_train_writes_a_model_that_loads(runs: list[Path], tmp_path: Path) -> None:
    runs_dir = runs[0].parent
    rc = train.main(["--runs", str(runs_dir), "--corpus", str(tmp_path / "none"), "--models",
                     str(tmp_path / "models"), "--version", "test-1", "--folds", "2"])
    assert rc == 0
    model = FlowClassifier.load(tmp_path / "models" / "test-1")
    meta = model.metadata
    assert meta.version == "test-1"
    assert meta.training_data["rows"] > 0 and len(meta.training_data["data_sha256"]) == 64
    assert (tmp_path / "models" / "CURRENT").read_text().strip() == "test-1"
    live = FlowClassifier.load(tmp_path / "models" / "test-1", live=True).metadata
    assert live.opening_thresholds is not None and set(live.opening_thresholds) == set(CLASSES)
    splits = dict(zip(FEATURES, model.booster.feature_importance("split"), strict=True))
    assert all(splits[name] == 0 for name in train.OFFLINE_IGNORES)  # nDPI's label: not offline
    metrics = json.loads((tmp_path / "models" / "test-1" / "metrics.json").read_text())
    assert "StratifiedGroupKFold" in metrics["evaluation"]
    assert set(metrics["per_class_sessions"]) == set(CLASSES)
    live = FlowClassifier.load(tmp_path / "models" / "test-1", live=True)  # the second booster
    assert live.metadata.capture.idle_timeout < meta.capture.idle_timeout
    assert set(metrics["live"]["time_to_detect"]) == set(CLASSES[1:])


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
