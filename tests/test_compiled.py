"""The model compiled by lleaves predicts what LightGBM predicts, and its cache is used safely."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from flowguard import model as model_module
from flowguard.capture import read_flows
from flowguard.errors import ModelError
from flowguard.features import FEATURES, vectorize
from flowguard.model import FlowClassifier, default_model_dir


@pytest.fixture(scope="module")
def rows(sample_pcaps: list[Path]) -> np.ndarray:
    """Feature rows of every sample capture's flows and live windows, and random rows with gaps."""
    meta = FlowClassifier.load(default_model_dir(), lazy=True).metadata
    live = FlowClassifier.load(default_model_dir(), live=True, lazy=True).metadata
    flows = [f for p in sample_pcaps for opts in (meta.capture, live.capture) for f in read_flows(p, opts)]
    rng = np.random.default_rng(3)
    noise = rng.uniform(-100, 3000, size=(500, len(FEATURES))).astype(np.float32)
    noise[rng.uniform(size=noise.shape) < 0.2] = np.nan
    noise[:, FEATURES.index("app_family")] = rng.integers(0, 8, size=500)
    return np.vstack([vectorize(flows), noise])


@pytest.mark.parametrize("live", [False, True])
def test_compiled_predicts_what_lightgbm_predicts(rows: np.ndarray, live: bool, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWGUARD_CACHE_DIR", str(tmp_path))
    compiled = FlowClassifier.load(default_model_dir(), live=live, predictor="compiled")
    reference = FlowClassifier.load(default_model_dir(), live=live, predictor="lightgbm")
    assert (compiled.predictor, reference.predictor) == ("compiled", "lightgbm")
    p, q = compiled.predict_proba(rows), reference.predict_proba(rows)
    assert p.shape == q.shape == (len(rows), 3)
    np.testing.assert_allclose(p, q, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(compiled.decide(p, rows, live)[0], reference.decide(q, rows, live)[0])
    # explanations still come from LightGBM
    flagged = np.flatnonzero(compiled.decide(p, rows)[0] != 0)[:5]
    if len(flagged):
        assert compiled.explain(rows[flagged], compiled.decide(p, rows)[0][flagged])


def test_compiled_code_is_cached_and_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("FLOWGUARD_CACHE_DIR", str(cache))
    first = FlowClassifier.load(default_model_dir(), lazy=True, predictor="compiled")
    first.prepare()
    objects = list(cache.iterdir())
    assert len(objects) == 1 and objects[0].suffix == ".o"
    assert objects[0].name.startswith(first.metadata.model_sha256[:16])
    assert (cache.stat().st_mode & 0o777) == 0o700
    stamp = objects[0].stat().st_mtime_ns
    again = FlowClassifier.load(default_model_dir(), lazy=True, predictor="compiled")
    again.prepare()
    assert list(cache.iterdir()) == objects and objects[0].stat().st_mtime_ns == stamp
    x = np.random.default_rng(0).uniform(0, 500, size=(20, len(FEATURES))).astype(np.float32)
    np.testing.assert_array_equal(first.predict_proba(x), again.predict_proba(x))
    live = FlowClassifier.load(default_model_dir(), live=True, lazy=True, predictor="compiled")
    live.prepare()
    assert len(list(cache.iterdir())) == 2  # each booster its own object file


def test_a_cache_that_cannot_be_made_compiles_in_memory(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the cache directory would go")
    monkeypatch.setenv("FLOWGUARD_CACHE_DIR", str(blocker / "flowguard"))
    clf = FlowClassifier.load(default_model_dir(), predictor="compiled")
    assert clf.predictor == "compiled" and blocker.read_text().startswith("a file")


def test_a_cache_others_can_write_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its files are machine code that would run: a directory anyone can write is never read."""
    cache = tmp_path / "shared"
    cache.mkdir()
    cache.chmod(0o777)
    planted = cache / "planted.o"
    planted.write_bytes(b"not an object file")
    monkeypatch.setenv("FLOWGUARD_CACHE_DIR", str(cache))
    clf = FlowClassifier.load(default_model_dir(), predictor="compiled")
    assert clf.predictor == "compiled"
    assert sorted(p.name for p in cache.iterdir()) == ["planted.o"]


def test_predictor_setting_is_checked_and_auto_falls_back(monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ModelError, match=r"predictor: 'fast' is not one of auto, compiled, lightgbm"):
        FlowClassifier.load(default_model_dir(), predictor="fast")

    def broken(*args: object, **kwargs: object) -> None:
        raise ModelError("lleaves cannot compile it (test)")

    monkeypatch.setattr(model_module, "compile_model", broken)
    with caplog.at_level(logging.WARNING, logger="flowguard.model"):
        clf = FlowClassifier.load(default_model_dir(), predictor="auto")
    assert clf.predictor == "lightgbm"
    assert "predicting with LightGBM: lleaves cannot compile it (test)" in caplog.text
    with pytest.raises(ModelError, match="cannot compile"):
        FlowClassifier.load(default_model_dir(), predictor="compiled")
