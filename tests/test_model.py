from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from flowguard.errors import ModelError
from flowguard.features import FEATURES
from flowguard.model import CLASSES, FlowClassifier, ModelMetadata, default_model_dir


@pytest.fixture()
def model_copy(tmp_path: Path) -> Path:
    dst = tmp_path / "model"
    shutil.copytree(default_model_dir(), dst)
    return dst


def edit_metadata(model_dir: Path, **changes: object) -> None:
    path = model_dir / "metadata.json"
    meta = json.loads(path.read_text())
    meta.update(changes)
    path.write_text(json.dumps(meta))


def test_bundled_model_loads_with_its_metadata(classifier: FlowClassifier) -> None:
    meta = classifier.metadata
    assert meta.features == FEATURES
    assert meta.classes == CLASSES
    assert set(meta.thresholds) == set(CLASSES)
    assert meta.library_versions["lightgbm"]
    assert meta.training_data["rows"] > 0
    assert (classifier.path / "metrics.json").is_file()


def test_predict_proba_rows_sum_to_one(classifier: FlowClassifier) -> None:
    x = np.random.default_rng(0).uniform(0, 1000, size=(50, len(FEATURES))).astype(np.float32)
    p = classifier.predict_proba(x)
    assert p.shape == (50, len(CLASSES))
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)
    assert classifier.predict_proba(x[:0]).shape == (0, len(CLASSES))


def test_decide_applies_thresholds(classifier: FlowClassifier) -> None:
    t = classifier.metadata.thresholds
    mining, tunnel = t["stratum_mining"], t["reverse_tunnel"]
    proba = np.array([
        [0.0, 1.0, 0.0],                          # clearly mining
        [1 - mining + 0.001, mining - 0.001, 0],  # just under the mining threshold: benign
        [0.0, 0.0, 1.0],                          # clearly a tunnel
    ])
    verdict, score = classifier.decide(proba)
    assert [CLASSES[v] for v in verdict] == ["stratum_mining", "benign", "reverse_tunnel"]
    assert score[0] == 1.0 and score[1] == pytest.approx(1 - mining + 0.001)
    assert tunnel <= 1.0


def test_decide_leaves_windows_too_small_to_judge_benign(classifier: FlowClassifier) -> None:
    """A mid-connection window (no SYN) of fewer than min_packets packets is benign whatever its
    scores; with a SYN, or with enough packets, it is judged."""
    x = np.zeros((3, len(FEATURES)), dtype=np.float32)
    syn, packets = FEATURES.index("syn_packets"), FEATURES.index("packets")
    small = classifier.metadata.min_packets - 1
    x[0, packets] = small
    x[1, packets], x[1, syn] = small, 1
    x[2, packets] = small + 1
    proba = np.tile([0.0, 1.0, 0.0], (3, 1))
    verdict, _ = classifier.decide(proba, x)
    assert [CLASSES[v] for v in verdict] == ["benign", "stratum_mining", "stratum_mining"]
    assert classifier.metadata.min_packets >= 2


def test_live_booster_loads_with_its_own_thresholds_and_windows(classifier: FlowClassifier) -> None:
    live = FlowClassifier.load(classifier.path, live=True)
    meta = classifier.metadata
    assert meta.live is not None
    assert live.metadata.thresholds == meta.live.thresholds
    assert live.metadata.capture == meta.live.capture
    assert live.metadata.capture.active_timeout < meta.capture.active_timeout
    assert live.booster is not classifier.booster
    x = np.random.default_rng(1).uniform(0, 1000, size=(20, len(FEATURES))).astype(np.float32)
    assert not np.allclose(live.predict_proba(x), classifier.predict_proba(x))


def test_tampered_live_booster_is_refused(model_copy: Path) -> None:
    with (model_copy / "model-live.txt").open("a") as fh:
        fh.write("\n")
    FlowClassifier.load(model_copy)  # the main booster is still fine
    with pytest.raises(ModelError, match="checksum"):
        FlowClassifier.load(model_copy, live=True)
    (model_copy / "model-live.txt").unlink()
    with pytest.raises(ModelError, match="missing"):
        FlowClassifier.load(model_copy, live=True)
    meta = json.loads((model_copy / "metadata.json").read_text())
    del meta["live"]
    (model_copy / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="no booster for live windows"):
        FlowClassifier.load(model_copy, live=True)


def test_live_booster_name_cannot_leave_the_model_directory(model_copy: Path) -> None:
    meta = json.loads((model_copy / "metadata.json").read_text())
    meta["live"]["model_file"] = "../../etc/passwd"
    (model_copy / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="malformed"):
        FlowClassifier.load(model_copy, live=True)


def test_tampered_model_file_is_refused(model_copy: Path) -> None:
    with (model_copy / "model.txt").open("a") as fh:
        fh.write("\n")
    with pytest.raises(ModelError, match="checksum"):
        FlowClassifier.load(model_copy)


def test_model_for_other_features_is_refused(model_copy: Path) -> None:
    edit_metadata(model_copy, features=list(FEATURES[:-1]) + ["some_new_feature"])
    with pytest.raises(ModelError, match="other features"):
        FlowClassifier.load(model_copy)


def test_model_for_other_classes_is_refused(model_copy: Path) -> None:
    edit_metadata(model_copy, classes=["benign", "evil"])
    with pytest.raises(ModelError, match="classes"):
        FlowClassifier.load(model_copy)


def test_unknown_metadata_format_is_refused(model_copy: Path) -> None:
    edit_metadata(model_copy, format=99)
    with pytest.raises(ModelError, match="format"):
        FlowClassifier.load(model_copy)


def test_not_a_model_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not a model directory"):
        FlowClassifier.load(tmp_path)
    (tmp_path / "metadata.json").write_text("{not json")
    (tmp_path / "model.txt").write_text("")
    with pytest.raises(ModelError, match="unreadable metadata"):
        FlowClassifier.load(tmp_path)


def test_pickle_is_never_a_model(model_copy: Path) -> None:
    """A model file that is not LightGBM text (e.g. a pickle) fails, its checksum matching or not."""
    import hashlib

    (model_copy / "model.txt").write_bytes(b"\x80\x04\x95pickle-bytes")
    digest = hashlib.sha256((model_copy / "model.txt").read_bytes()).hexdigest()
    edit_metadata(model_copy, model_sha256=digest)
    with pytest.raises(ModelError):
        FlowClassifier.load(model_copy)


def test_env_var_selects_the_model(model_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWGUARD_MODEL", str(model_copy))
    assert default_model_dir() == model_copy


def test_checksum_is_checked_before_lightgbm_reads_the_file(
    model_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tampered model.txt never reaches LightGBM's parser."""
    import lightgbm

    def parse(*args: object, **kwargs: object) -> None:
        raise AssertionError("LightGBM was handed a model whose checksum does not match")

    monkeypatch.setattr(lightgbm, "Booster", parse)
    text = (model_copy / "model.txt").read_text()
    (model_copy / "model.txt").write_text(text.replace("num_leaves=", "num_leaves=9", 1))
    with pytest.raises(ModelError, match="checksum .* does not match"):
        FlowClassifier.load(model_copy)


def test_a_foreign_model_with_a_matching_checksum_is_refused(model_copy: Path) -> None:
    """Someone else's LightGBM model, with metadata.json edited to carry its checksum: refused,
    because its own header names other features."""
    import hashlib

    import lightgbm

    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(200, 4)), rng.integers(0, 3, 200)
    foreign = lightgbm.train({"objective": "multiclass", "num_class": 3, "verbose": -1},
                             lightgbm.Dataset(x, y), num_boost_round=2).model_to_string()
    (model_copy / "model.txt").write_text(foreign)
    edit_metadata(model_copy, model_sha256=hashlib.sha256(foreign.encode()).hexdigest())
    with pytest.raises(ModelError, match="not a LightGBM model for its metadata's features"):
        FlowClassifier.load(model_copy)


def test_nothing_in_flowguard_unpickles() -> None:
    """No pickle, joblib, marshal or shelve load anywhere in the package (or numpy loads with
    allow_pickle): nothing read from a file or the network can run code."""
    import re

    package = Path(__file__).resolve().parents[1] / "flowguard"
    banned = re.compile(
        r"\b(pickle|cPickle|dill|cloudpickle|joblib|marshal|shelve)\b\s*\.\s*(load|loads|Unpickler|open)\b"
        r"|^\s*(import|from)\s+(pickle|cPickle|dill|cloudpickle|joblib|marshal|shelve)\b"
        r"|allow_pickle\s*=\s*True|yaml\.load\(|\beval\(|\bexec\(",
        re.MULTILINE,
    )
    found = [f"{p.relative_to(package.parent)}: {m.group(0).strip()}"
             for p in sorted(package.rglob("*.py")) for m in banned.finditer(p.read_text())]
    assert found == []
    assert banned.search("model = joblib.load(path)") and banned.search("import pickle")


def test_lazy_load_checks_now_and_parses_at_first_prediction(classifier: FlowClassifier) -> None:
    lazy = FlowClassifier.load(classifier.path, lazy=True, predictor="lightgbm")
    assert lazy._booster is None and lazy.path == classifier.path
    x = np.random.default_rng(2).uniform(0, 1000, size=(30, len(FEATURES))).astype(np.float32)
    np.testing.assert_allclose(lazy.predict_proba(x), classifier.predict_proba(x), rtol=0, atol=1e-12)
    assert lazy._booster is not None and lazy.predictor == "lightgbm"


def test_a_lazy_compiled_model_parses_lightgbm_only_to_explain(classifier: FlowClassifier) -> None:
    lazy = FlowClassifier.load(classifier.path, lazy=True, predictor="compiled")
    x = np.random.default_rng(2).uniform(0, 1000, size=(30, len(FEATURES))).astype(np.float32)
    proba = lazy.predict_proba(x)
    assert lazy.predictor == "compiled" and lazy._booster is None
    assert lazy.explain(x[:2], np.array([1, 2]))  # LightGBM's pred_contrib, on one class's trees
    assert set(lazy._explainers) == {1, 2} and lazy._booster is None
    np.testing.assert_allclose(proba, classifier.predict_proba(x), rtol=0, atol=1e-12)


@pytest.mark.parametrize("live", [False, True])
def test_explanations_are_the_whole_models_shap_values_for_the_class(classifier: FlowClassifier,
                                                                     live: bool) -> None:
    """explain() runs pred_contrib on a booster of one class's trees (modeltext.one_class_text): the
    values must be the whole model's for that class, and its raw score that class's."""
    from flowguard.model import Reason

    clf = FlowClassifier.load(classifier.path, live=live, predictor="lightgbm")
    rng = np.random.default_rng(5)
    x = rng.uniform(0, 2000, size=(200, len(FEATURES))).astype(np.float32)
    x[rng.uniform(size=x.shape) < 0.2] = np.nan
    x[:, FEATURES.index("app_family")] = rng.integers(0, 8, size=200)
    width = len(FEATURES) + 1
    whole = clf.booster.predict(x, pred_contrib=True).reshape(200, len(CLASSES), width)
    raw = clf.booster.predict(x, raw_score=True)
    for cls in range(len(CLASSES)):
        one = clf._explainer(cls)
        np.testing.assert_allclose(one.predict(x, pred_contrib=True), whole[:, cls], rtol=0, atol=1e-12)
        np.testing.assert_allclose(one.predict(x, raw_score=True), raw[:, cls], rtol=0, atol=1e-12)
    classes = rng.integers(1, 3, size=200)
    for row, reasons in enumerate(clf.explain(x, classes, top=3)):
        values = whole[row, classes[row], :-1]
        top = [j for j in np.argsort(-values)[:3] if values[j] > 0]
        assert reasons == [Reason(FEATURES[j], reasons[k].value, round(float(values[j]), 4))
                           for k, j in enumerate(top)]


@pytest.mark.parametrize("live", [False, True])
def test_features_used_are_what_the_trees_split_on_and_decide_as_the_whole_matrix(
    classifier: FlowClassifier, live: bool
) -> None:
    """Triage computes only the features the trees read (features_used); the columns it leaves NaN
    must change no score."""
    from flowguard.features import vectorize
    from tests.test_features import flow

    clf = FlowClassifier.load(classifier.path, live=live, predictor="lightgbm")
    split = clf.booster.feature_importance("split")
    assert clf.features_used == {name for name, n in zip(FEATURES, split, strict=True) if n > 0}
    records = [flow(), flow(application_name="TLS.Google", dst_port=443), flow(splt_ps=[0] * 20)]
    whole, needed = vectorize(records), vectorize(records, clf.features_used)
    np.testing.assert_array_equal(clf.predict_proba(whole), clf.predict_proba(needed))


def test_lazy_load_still_refuses_a_tampered_model(model_copy: Path) -> None:
    with (model_copy / "model.txt").open("a") as fh:
        fh.write("\n")
    with pytest.raises(ModelError, match="checksum"):
        FlowClassifier.load(model_copy, lazy=True)


def test_triage_reports_a_model_lightgbm_cannot_parse_as_a_model_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Triage parses the trees once nfstream has begun reading: a failure there is still reported
    as a --model problem (exit 2), not as a bad capture."""
    from typer.testing import CliRunner

    from flowguard import model as model_module
    from flowguard.cli import app

    def refuse(text: str, path: Path | None) -> None:
        raise ModelError(f"{path}: LightGBM cannot read it (test)")

    monkeypatch.setattr(model_module, "_parse_booster", refuse)
    sample = sorted((Path(__file__).resolve().parents[1] / "pcaps").glob("*.pcap"))[0]
    result = CliRunner().invoke(app, ["triage", "-f", "jsonl", "--no-progress", str(sample)])
    assert result.exit_code == 2
    assert "--model:" in result.output and "LightGBM cannot read it" in result.output


def test_opening_thresholds_hold_only_live_windows_that_open_their_connection(
    classifier: FlowClassifier,
) -> None:
    """A live window with its connection's SYN is judged with the opening thresholds; a later
    window, a connection rebuilt from windows, or a flow in triage, with the others."""
    from dataclasses import replace

    meta = replace(classifier.metadata, thresholds={"benign": 0.0, "stratum_mining": 0.99,
                                                    "reverse_tunnel": 0.99},
                   opening_thresholds={"benign": 0.0, "stratum_mining": 0.8, "reverse_tunnel": 0.99})
    clf = FlowClassifier(classifier.booster, meta)
    x = np.zeros((2, len(FEATURES)), dtype=np.float32)
    syn, packets = FEATURES.index("syn_packets"), FEATURES.index("packets")
    x[:, packets] = 10
    x[0, syn] = 1
    proba = np.tile([0.1, 0.9, 0.0], (2, 1))
    as_windows, _ = clf.decide(proba, x, windows=True)
    assert [CLASSES[v] for v in as_windows] == ["stratum_mining", "benign"]
    as_flows, _ = clf.decide(proba, x)
    assert [CLASSES[v] for v in as_flows] == ["benign", "benign"]


def test_live_metadata_round_trips_its_opening_thresholds(classifier: FlowClassifier) -> None:
    from flowguard.model import LiveModel

    live = classifier.metadata.live
    assert live is not None and live.opening_thresholds is not None
    assert LiveModel.from_dict(live.to_dict()) == live
    older = {k: v for k, v in live.to_dict().items() if k != "opening_thresholds"}
    assert LiveModel.from_dict(older).opening_thresholds is None
    loaded = FlowClassifier.load(classifier.path, live=True).metadata
    assert loaded.opening_thresholds == live.opening_thresholds
    assert classifier.metadata.opening_thresholds is None  # triage's flows: never


def test_lowest_thresholds_cover_every_booster_and_window_kind(classifier: FlowClassifier) -> None:
    meta = classifier.metadata
    assert meta.live is not None and meta.live.opening_thresholds is not None
    lowest = meta.lowest_thresholds()
    for c in CLASSES:
        expected = min(meta.thresholds[c], meta.live.thresholds[c], meta.live.opening_thresholds[c],
                       *(t[c] for t in (meta.eager_thresholds or {}).values()))
        assert lowest[c] == expected
    live = FlowClassifier.load(classifier.path, live=True, lazy=True).metadata
    assert live.lowest_thresholds() == lowest  # the same whichever booster was loaded


EAGER = {"offline": {"benign": 0.0, "stratum_mining": 0.96, "reverse_tunnel": 0.97},
         "live": {"benign": 0.0, "stratum_mining": 0.997, "reverse_tunnel": 0.98},
         "opening": {"benign": 0.0, "stratum_mining": 0.01, "reverse_tunnel": 0.99}}


def test_eager_thresholds_judge_only_when_tunnels_are_eager(model_copy: Path) -> None:
    """A model with thresholds chosen for --eager-tunnels: loaded eager, each booster and kind of
    window is judged with them; loaded held (the default), with the model's own."""
    held = {live: FlowClassifier.load(model_copy, live=live, lazy=True).metadata
            for live in (False, True)}
    edit_metadata(model_copy, eager_thresholds=EAGER)
    offline = FlowClassifier.load(model_copy, lazy=True, eager_tunnels=True).metadata
    live = FlowClassifier.load(model_copy, live=True, lazy=True, eager_tunnels=True).metadata
    assert offline.thresholds == EAGER["offline"] and offline.opening_thresholds is None
    assert live.thresholds == EAGER["live"] and live.opening_thresholds == EAGER["opening"]
    for is_live, meta in held.items():
        again = FlowClassifier.load(model_copy, live=is_live, lazy=True).metadata
        assert (again.thresholds, again.opening_thresholds) == (meta.thresholds,
                                                                meta.opening_thresholds)
        assert again.eager_thresholds == EAGER
        # every verdict the model gives, eager or not, reaches its lowest thresholds
        assert again.lowest_thresholds()["stratum_mining"] == 0.01
    whole = FlowClassifier.load(model_copy, lazy=True).metadata
    assert ModelMetadata.from_dict(whole.to_dict(), model_copy) == whole  # written as read


def test_eager_tunnels_change_nothing_on_a_model_with_one_set(model_copy: Path) -> None:
    """Models trained before 2026-11-25 have one set of thresholds, for both ways."""
    meta = json.loads((model_copy / "metadata.json").read_text())
    meta.pop("eager_thresholds", None)
    (model_copy / "metadata.json").write_text(json.dumps(meta))
    for live in (False, True):
        a = FlowClassifier.load(model_copy, live=live, lazy=True).metadata
        b = FlowClassifier.load(model_copy, live=live, lazy=True, eager_tunnels=True).metadata
        assert a == b and a.eager_thresholds is None


@pytest.mark.parametrize(("eager", "message"), [
    ({"shadow": EAGER["live"]}, "unknown kinds ['shadow'], allowed: offline, live, opening"),
    ({"live": {"benign": 0.0, "mining": 0.9}}, "eager_thresholds.live name unknown classes"),
])
def test_malformed_eager_thresholds_are_refused(model_copy: Path, eager: object,
                                                message: str) -> None:
    edit_metadata(model_copy, eager_thresholds=eager)
    with pytest.raises(ModelError, match=re.escape(message)):
        FlowClassifier.load(model_copy, lazy=True)


def test_explanations_are_prepared_once_in_a_background_thread(classifier: FlowClassifier) -> None:
    import threading

    lazy = FlowClassifier.load(classifier.path, lazy=True)
    lazy.prepare_explanations()
    lazy.prepare_explanations()  # a second call starts nothing
    threads = [t for t in threading.enumerate() if t.name == "flowguard-explainer"]
    assert len(threads) <= 1
    lazy.settle()
    assert not any(t.is_alive() for t in threads)
    assert set(lazy._explainers) == {1, 2}  # benign verdicts are not explained
    assert lazy._booster is None  # the whole LightGBM model is never needed to explain
