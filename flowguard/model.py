"""The flow classifier: a LightGBM model in its own text format plus `metadata.json`, checked on load.

A model directory holds:
    model.txt      LightGBM's native text dump (never a pickle: nothing loaded here runs code)
    model-live.txt the booster for live windows (see LiveModel)
    metadata.json  version, classes, features, capture options, thresholds, training data summary,
                   library versions, the sha256 of both boosters and the live one's thresholds
    metrics.json   what the training pipeline measured on its held-out sessions

`FlowClassifier.load` refuses a model whose checksum, feature list or classes do not match what this
flowguard computes, so a model is never fed columns in an order it was not trained on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from flowguard.capture import CaptureOptions
from flowguard.compiled import CompiledModel, compile_model
from flowguard.errors import ModelError, PredictorError
from flowguard.features import FEATURES, SPLT_PACKETS, judged, opens_connection
from flowguard.modeltext import check_model_text, model_header, one_class_text, split_features

CLASSES: tuple[str, ...] = ("benign", "stratum_mining", "reverse_tunnel")
"""The verdicts, in the order of the model's output columns."""
BENIGN = 0
METADATA_FORMAT = 1
MODEL_FILE = "model.txt"
LIVE_MODEL_FILE = "model-live.txt"
EAGER_KINDS = ("offline", "live", "opening")
"""The kinds of rows ModelMetadata.eager_thresholds may hold thresholds for."""
METADATA_FILE = "metadata.json"
PREDICTORS = ("auto", "compiled", "lightgbm")
"""What `FlowClassifier.load` may predict with (its `predictor`)."""
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LiveModel:
    """The booster for live windows, shipped beside the main one (`model-live.txt`).

    Live windows (5 s, or until 2 s of silence) are judged by a booster that learned from them as
    well as from whole captures, with thresholds chosen on live windows; triage's whole flows are
    judged by the main booster, which learned from whole captures and their early cuts only.
    """

    model_file: str
    model_sha256: str
    thresholds: dict[str, float]
    capture: CaptureOptions
    opening_thresholds: dict[str, float] | None = None
    """For a window that opens its connection (it holds the SYN): its handshake and first messages,
    judged alone. They are chosen apart because such windows score unlike later windows and
    connections so far; None: `thresholds` apply to every window."""

    def to_dict(self) -> dict[str, Any]:
        out = {"model_file": self.model_file, "model_sha256": self.model_sha256,
               "thresholds": self.thresholds, "capture": self.capture.to_dict()}
        if self.opening_thresholds is not None:
            out["opening_thresholds"] = self.opening_thresholds
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LiveModel:
        name = str(data["model_file"])
        if Path(name).name != name:
            raise ValueError(f"live model_file must be a file name, got {name!r}")
        opening = data.get("opening_thresholds")
        return cls(name, str(data["model_sha256"]),
                   {str(k): float(v) for k, v in data["thresholds"].items()},
                   CaptureOptions.from_dict(data["capture"]),
                   {str(k): float(v) for k, v in opening.items()} if opening is not None else None)


@dataclass(frozen=True)
class ModelMetadata:
    """What `metadata.json` records about a model."""

    version: str
    classes: tuple[str, ...]
    features: tuple[str, ...]
    thresholds: dict[str, float]
    capture: CaptureOptions
    model_sha256: str
    created: str = ""
    training_data: dict[str, Any] = field(default_factory=dict)
    library_versions: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    min_packets: int = 1
    """Windows without a SYN and with fewer packets are not judged (features.MIN_JUDGED_PACKETS)."""
    live: LiveModel | None = None
    opening_thresholds: dict[str, float] | None = None
    """Set when loaded for live windows (LiveModel.opening_thresholds); not written: it is the live
    booster's, recorded under `live`."""
    offline_thresholds: dict[str, float] | None = None
    """Set when loaded for live windows: the whole-flow booster's thresholds, which `thresholds`
    then no longer holds (for lowest_thresholds); not written."""
    eager_thresholds: dict[str, dict[str, float]] | None = None
    """Per kind of row (EAGER_KINDS: "offline" whole flows, "live" windows, "opening" windows), the
    thresholds chosen for `--eager-tunnels`, where every tunnel score counts, not only those that
    would be given once the connection behaves as a tunnel (params "tunnel_thresholds": "held").
    `FlowClassifier.load(eager_tunnels=True)` puts them in place; None: the model has one set."""

    def lowest_thresholds(self) -> dict[str, float]:
        """Per class, the lowest score at which any of the model's boosters flags it: whole flows,
        live windows, or live windows that open their connection. Every verdict of that class the
        model gives reached at least this (the service's default blocking thresholds)."""
        sets = [self.thresholds, self.opening_thresholds or {}, self.offline_thresholds or {}]
        if self.live is not None:
            sets += [self.live.thresholds, self.live.opening_thresholds or {}]
        sets += (self.eager_thresholds or {}).values()
        return {c: min(s[c] for s in sets if c in s) for c in self.thresholds}

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": METADATA_FORMAT,
            "version": self.version,
            "created": self.created,
            "classes": list(self.classes),
            "features": list(self.features),
            "thresholds": self.thresholds,
            "min_packets": self.min_packets,
            "capture": self.capture.to_dict(),
            "model_file": MODEL_FILE,
            "model_sha256": self.model_sha256,
            "training_data": self.training_data,
            "library_versions": self.library_versions,
            "params": self.params,
            **({"live": self.live.to_dict()} if self.live is not None else {}),
            **({"eager_thresholds": self.eager_thresholds}
               if self.eager_thresholds is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: Path) -> ModelMetadata:
        if data.get("format") != METADATA_FORMAT:
            raise ModelError(
                f"{where}: metadata format {data.get('format')!r} is not supported "
                f"(this flowguard reads format {METADATA_FORMAT})"
            )
        try:
            return cls(
                version=str(data["version"]),
                classes=tuple(data["classes"]),
                features=tuple(data["features"]),
                thresholds={str(k): float(v) for k, v in data["thresholds"].items()},
                min_packets=int(data.get("min_packets", 1)),
                capture=CaptureOptions.from_dict(data["capture"]),
                model_sha256=str(data["model_sha256"]),
                created=str(data.get("created", "")),
                training_data=dict(data.get("training_data", {})),
                library_versions=dict(data.get("library_versions", {})),
                params=dict(data.get("params", {})),
                live=LiveModel.from_dict(data["live"]) if data.get("live") is not None else None,
                eager_thresholds=_threshold_sets(data.get("eager_thresholds")),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ModelError(f"{where}: metadata is incomplete or malformed ({exc})") from exc


def _threshold_sets(data: Any) -> dict[str, dict[str, float]] | None:
    if data is None:
        return None
    unknown = set(data) - set(EAGER_KINDS)
    if unknown:
        raise ValueError(f"eager_thresholds: unknown kinds {sorted(unknown)}, "
                         f"allowed: {', '.join(EAGER_KINDS)}")
    return {str(kind): {str(k): float(v) for k, v in values.items()} for kind, values in data.items()}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def default_model_dir() -> Path:
    """The bundled model: $FLOWGUARD_MODEL, else the version named in models/CURRENT."""
    env = os.environ.get("FLOWGUARD_MODEL")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent
    for root in (here / "_bundled_models", here.parent / "models"):
        current = root / "CURRENT"
        if current.is_file():
            return root / current.read_text().strip()
    raise ModelError("no bundled model found: pass --model DIR or set FLOWGUARD_MODEL")


class FlowClassifier:
    """Classifies feature matrices into CLASSES with per-class thresholds.

    Usage:
        clf = FlowClassifier.load("models/2026.11.23")
        matrix = features.vectorize(records, clf.features_used)
        verdicts, scores = clf.decide(clf.predict_proba(matrix), matrix)
    """

    def __init__(self, booster: Any, metadata: ModelMetadata, path: Path | None = None) -> None:
        self._booster = booster
        self._model_text: str | None = None  # the checked model text, set by load
        self._model_file: Path | None = None
        self._wanted = "lightgbm"  # load's `predictor`
        self._compiled: CompiledModel | None = None
        self._compile_tried = False
        self._booster_lock = threading.Lock()
        self._explainers: dict[int, Any] = {}  # class -> a booster of its trees alone
        self._explainer_thread: threading.Thread | None = None
        self._features_used: frozenset[str] | None = None
        self.metadata = metadata
        self.path = path

    @property
    def booster(self) -> Any:
        """The LightGBM booster (predictions where the model is not compiled, and explanations);
        parsed at first use, when `load` left it for later."""
        with self._booster_lock:
            if self._booster is None and self._model_text is not None:
                self._booster = _parse_booster(self._model_text, self._model_file)
        return self._booster

    def prepare_explanations(self) -> None:
        """Import LightGBM and parse the trees for `explain` in a background thread, if they are
        not yet (once): triage does it while nfstream's meter reads, so that the flagged flows
        (often the long ones, exported when the file ends) do not wait for it. A failure here is
        raised again, from the calling thread, by the first `explain`."""

        def parse() -> None:
            try:
                self._parse_explainers()
            except ModelError:
                pass  # `explain` tries again and raises it

        if self._explainer_thread is None and len(self._explainers) < len(self.classes) - 1:
            self._explainer_thread = threading.Thread(target=parse, name="flowguard-explainer",
                                                      daemon=True)
            self._explainer_thread.start()

    def settle(self) -> None:
        """Wait until a `prepare_explanations` thread is done: before forking (a child would inherit
        the import locks it holds) and before the process exits."""
        if self._explainer_thread is not None:
            self._explainer_thread.join()

    def _parse_explainers(self) -> None:
        for cls in range(len(self.classes)):
            if cls != BENIGN:  # benign verdicts are not explained
                self._explainer(cls)

    def _explainer(self, cls: int) -> Any:
        """A LightGBM booster of class `cls`'s trees alone (modeltext.one_class_text): the same SHAP
        values for that class as the whole model, three times faster."""
        with self._booster_lock:
            if cls not in self._explainers:
                one = one_class_text(self._text(), cls, len(self.classes))
                self._explainers[cls] = _parse_booster(one, self._model_file)
            return self._explainers[cls]

    def _text(self) -> str:
        """The model's LightGBM text: as loaded, or written by the booster it was built from."""
        return self._model_text if self._model_text is not None else self._booster.model_to_string()

    @property
    def features_used(self) -> frozenset[str]:
        """The features its trees split on: what `vectorize(records, needed=...)` must compute."""
        if self._features_used is None:
            names = self.metadata.features
            self._features_used = frozenset(names[i] for i in split_features(self._text()))
        return self._features_used

    @property
    def predictor(self) -> str:
        """What predicts: "compiled" (lleaves) or "lightgbm" (once prepared)."""
        return "compiled" if self._compiled is not None else "lightgbm"

    def prepare(self) -> None:
        """Make the predictor now, if `load(lazy=True)` left it for later: compile the trees (see
        `load`'s predictor) or import LightGBM and parse them. Raises ModelError when neither can."""
        if self._wanted != "lightgbm" and not self._compile_tried and self._model_text is not None:
            self._compile_tried = True
            try:
                self._compiled = compile_model(self._model_text, self.metadata.model_sha256,
                                               len(self.classes), len(self.metadata.features),
                                               self._model_file or Path("model.txt"))
            except ModelError as exc:
                if self._wanted == "compiled":
                    raise PredictorError(f"compiled: {exc}") from exc
                _log.warning("predicting with LightGBM: %s", exc)
        if self._compiled is None:
            self.booster  # noqa: B018  # the property does the work

    @property
    def version(self) -> str:
        return self.metadata.version

    @property
    def classes(self) -> tuple[str, ...]:
        return self.metadata.classes

    @classmethod
    def load(cls, directory: str | os.PathLike[str], live: bool = False,
             lazy: bool = False, predictor: str = "auto",
             eager_tunnels: bool = False) -> FlowClassifier:
        """Load and check a model directory; raises ModelError on any mismatch.

        live: load the booster for live windows instead (LiveModel): its thresholds and capture
        options replace the main ones in the returned classifier's metadata.
        lazy: check the files (metadata, checksum, the model's header) now, but import LightGBM and
        parse the trees at the first prediction (`booster`), which then may raise ModelError. Triage
        uses it to do that work while nfstream's meter, in its own process, reads the first packets.
        predictor: one of PREDICTORS. "compiled": predict with the trees compiled to machine code
        (flowguard.compiled: same probabilities, about four times faster), or raise ModelError;
        "lightgbm": with LightGBM; "auto": compiled where it can be, else LightGBM. LightGBM still
        explains verdicts (`explain`).
        eager_tunnels: judge with the thresholds chosen for `--eager-tunnels`
        (ModelMetadata.eager_thresholds), where the model has them; else with its only set.
        """
        if predictor not in PREDICTORS:
            raise PredictorError(f"{predictor!r} is not one of {', '.join(PREDICTORS)}")
        path = Path(directory)
        meta_path = path / METADATA_FILE
        model_path = path / MODEL_FILE
        if not meta_path.is_file() or not model_path.is_file():
            raise ModelError(f"{path}: not a model directory (needs {METADATA_FILE} and {MODEL_FILE})")
        try:
            raw = json.loads(meta_path.read_text())
        except (OSError, ValueError) as exc:
            raise ModelError(f"{meta_path}: unreadable metadata ({exc})") from exc
        if not isinstance(raw, dict):
            raise ModelError(f"{meta_path}: metadata must be a JSON object")
        meta = ModelMetadata.from_dict(raw, meta_path)
        if live:
            if meta.live is None:
                raise ModelError(f"{path}: model {meta.version} has no booster for live windows "
                                 "(metadata `live`); retrain it with this version")
            model_path = path / meta.live.model_file
            if not model_path.is_file():
                raise ModelError(f"{model_path}: the live booster named in the metadata is missing")
            meta = replace(meta, thresholds=meta.live.thresholds, capture=meta.live.capture,
                           model_sha256=meta.live.model_sha256,
                           opening_thresholds=meta.live.opening_thresholds,
                           offline_thresholds=meta.thresholds)
        if eager_tunnels and meta.eager_thresholds is not None:
            eager = meta.eager_thresholds
            if live:
                meta = replace(meta, thresholds=eager.get("live", meta.thresholds),
                               opening_thresholds=eager.get("opening", meta.opening_thresholds))
            else:
                meta = replace(meta, thresholds=eager.get("offline", meta.thresholds))
        # read once: the bytes checked are the bytes parsed
        data = model_path.read_bytes()
        actual = hashlib.sha256(data).hexdigest()
        if actual != meta.model_sha256:
            raise ModelError(
                f"{model_path}: checksum {actual[:12]}… does not match metadata "
                f"{meta.model_sha256[:12]}…; the model file was changed or belongs to another model"
            )
        check_compatible(meta, path)
        text = data.decode(errors="replace")
        header = model_header(text)
        if header.get("feature_names", "").split() != list(meta.features):
            raise ModelError(f"{model_path}: not a LightGBM model for its metadata's features")
        if header.get("num_tree_per_iteration") != str(len(meta.classes)):
            raise ModelError(f"{model_path}: its outputs ({header.get('num_tree_per_iteration')}) "
                             f"do not match the {len(meta.classes)} classes of its metadata")
        # LightGBM aborts the process, rather than raising, on a model whose trees are malformed
        check_model_text(text, str(model_path), len(meta.features), len(meta.classes))
        classifier = cls(None, meta, path)
        classifier._model_text, classifier._model_file = text, model_path
        classifier._wanted = predictor
        if not lazy:
            classifier.prepare()
            classifier._parse_explainers()  # LightGBM reads the trees it explains verdicts with
        return classifier

    def predict_proba(self, matrix: np.ndarray) -> np.ndarray:
        """Class probabilities, shape (rows, len(classes)). Call with batches, not single rows."""
        if matrix.shape[0] == 0:
            return np.empty((0, len(self.classes)))
        self.prepare()
        if self._compiled is not None:
            return self._compiled.predict(matrix)
        return np.asarray(self.booster.predict(matrix, num_threads=1)).reshape(
            matrix.shape[0], len(self.classes)
        )

    def explain(self, matrix: np.ndarray, classes: np.ndarray, top: int = 3) -> list[list[Reason]]:
        """The `top` features that pushed each row towards its class, from LightGBM's SHAP values
        (`pred_contrib`) for that class, largest contribution first. Costly (about 0.13 ms a row):
        call it for flagged rows only."""
        if matrix.shape[0] == 0:
            return []
        width = len(self.metadata.features) + 1  # one value per feature, then the bias
        contrib = np.empty((matrix.shape[0], width))
        for cls in np.unique(classes).tolist():
            rows = classes == cls
            values = self._explainer(cls).predict(matrix[rows], pred_contrib=True, num_threads=1)
            contrib[rows] = np.asarray(values).reshape(int(rows.sum()), width)
        out = []
        for row in range(matrix.shape[0]):
            values = contrib[row, :-1]
            order = np.argsort(-values)[:top]
            out.append([
                Reason(self.metadata.features[j], _plain(matrix[row, j]), round(float(values[j]), 4))
                for j in order if values[j] > 0
            ])
        return out

    def decide(self, proba: np.ndarray, matrix: np.ndarray | None = None,
               windows: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Verdict index and its probability per row.

        A row is given the non-benign class with the highest probability among those that reach
        their threshold; a row where none does is benign, scored with the benign probability.
        With the feature `matrix`, a row too small to judge (`features.judged`) is benign too.
        `windows`: the rows are live windows as exported (not connections rebuilt from them), so a
        window that opens its connection is held to the opening thresholds, where the model has them.
        """
        thresholds = np.tile([self.metadata.thresholds.get(c, 0.5) for c in self.classes],
                             (len(proba), 1))
        opening = self.metadata.opening_thresholds
        if windows and opening is not None and matrix is not None:
            rows = opens_connection(matrix)
            thresholds[rows] = [opening.get(c, 0.5) for c in self.classes]
        passing = np.where(proba >= thresholds, proba, -1.0)
        passing[:, BENIGN] = -1.0
        best = passing.argmax(axis=1)
        flagged = passing[np.arange(len(best)), best] >= 0
        if matrix is not None:
            flagged &= judged(matrix, self.metadata.min_packets)
        verdict = np.where(flagged, best, BENIGN)
        return verdict, proba[np.arange(len(verdict)), verdict]


def _parse_booster(text: str, model_path: Path | None) -> Any:
    lightgbm = _import_lightgbm()
    try:
        return lightgbm.Booster(model_str=text)
    except Exception as exc:  # LightGBMError, ValueError: any failure means an unusable model
        raise ModelError(f"{model_path}: LightGBM cannot read it ({exc})") from exc


# LightGBM imports these, when installed, only for its scikit-learn API, Dask and plotting, none of
# which flowguard uses: it hands LightGBM numpy arrays. Skipping them saves about 0.5 s of every
# command. (pandas is left alone: nfstream needs it.)
_LIGHTGBM_OPTIONAL = ("sklearn", "dask", "datatable", "matplotlib", "graphviz")


def _import_lightgbm() -> Any:
    """Import LightGBM without its optional integrations, unless something imported them already.
    It briefly hides those modules: no other thread may import them meanwhile (flowguard does not)."""
    import sys

    if "lightgbm" in sys.modules:
        return sys.modules["lightgbm"]
    hidden = [m for m in _LIGHTGBM_OPTIONAL if m not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # makes `import name` fail fast
    try:
        import lightgbm
    finally:
        for name in hidden:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]
    return lightgbm


@dataclass(frozen=True)
class Reason:
    """One feature's part in a verdict: its value in the flow and its contribution (log-odds)."""

    feature: str
    value: float | None
    contribution: float

    def to_dict(self) -> dict[str, Any]:
        return {"feature": self.feature, "value": self.value, "contribution": self.contribution}


def _plain(value: float) -> float | None:
    return None if np.isnan(value) else round(float(value), 4)


def check_compatible(meta: ModelMetadata, where: Path) -> None:
    """Refuse a model trained on other features, classes or first-packet window than ours."""
    if meta.features != FEATURES:
        missing = sorted(set(FEATURES) - set(meta.features))
        extra = sorted(set(meta.features) - set(FEATURES))
        detail = f"missing {missing[:5]}, unknown {extra[:5]}" if missing or extra else "order"
        raise ModelError(
            f"{where}: the model was trained on other features than this flowguard computes "
            f"({detail}); retrain it with this version"
        )
    if meta.classes != CLASSES:
        raise ModelError(f"{where}: model classes {list(meta.classes)} differ from {list(CLASSES)}")
    if meta.capture.splt_packets < SPLT_PACKETS:
        raise ModelError(
            f"{where}: capture.splt_packets is {meta.capture.splt_packets}, "
            f"features need at least {SPLT_PACKETS}"
        )
    for name, values in (("thresholds", meta.thresholds),
                         *((f"eager_thresholds.{k}", v) for k, v in (meta.eager_thresholds or {}).items())):
        unknown = set(values) - set(CLASSES)
        if unknown:
            raise ModelError(f"{where}: {name} name unknown classes {sorted(unknown)}")
