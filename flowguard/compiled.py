"""A model's trees compiled to machine code (lleaves, on LLVM), for fast batch predictions.

LightGBM walks its trees through a generic interpreter: about 11 us a flow on one core for the 720
trees of a shipped booster (the average of three, training/ensemble.py). lleaves compiles the same
model text into one native function with the same arithmetic, which predicts the same probabilities
(to the last few bits of a double) about five times faster. Only this module imports lleaves and
llvmlite.

Compiling takes a few seconds; the object code is kept in a cache directory, keyed by the model's
checksum, the compiler's versions and the host CPU, so later loads take milliseconds. The cache is
only used when it is a directory of this user's that nobody else can write (its files are machine
code that will run); otherwise the model is compiled in memory at each load.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from flowguard.errors import ModelError

CACHE_ENV = "FLOWGUARD_CACHE_DIR"
"""Where compiled models are kept; else systemd's $CACHE_DIRECTORY, else $XDG_CACHE_HOME/flowguard,
else ~/.cache/flowguard."""


def cache_dir() -> Path | None:
    """The directory compiled models are cached in (see CACHE_ENV), or None when there is no home."""
    for env in (CACHE_ENV, "CACHE_DIRECTORY"):
        if os.environ.get(env):
            return Path(os.environ[env].split(":")[0])
    base = os.environ.get("XDG_CACHE_HOME")
    if base:
        return Path(base) / "flowguard"
    try:
        return Path.home() / ".cache" / "flowguard"
    except RuntimeError:
        return None


class CompiledModel:
    """predict(matrix) -> (rows, classes) probabilities, as LightGBM's `Booster.predict` gives them."""

    def __init__(self, model: Any, classes: int) -> None:
        self._model = model
        self._classes = classes

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        data = np.ascontiguousarray(matrix, dtype=np.float64)
        return np.asarray(self._model.predict(data, n_jobs=1)).reshape(matrix.shape[0], self._classes)


def compile_model(text: str, sha256: str, classes: int, features: int, where: Path,
                  cache: Path | None = None) -> CompiledModel:
    """The model `text` (already checked, and its checksum `sha256`) compiled; raises ModelError when
    lleaves is missing or cannot compile it. `where`: the model file, for messages. `cache`: the cache
    directory (default cache_dir())."""
    # lleaves reads a file: a private copy of the checked text, so that what was checked is what
    # is compiled even if the model file changes meanwhile
    with tempfile.TemporaryDirectory(prefix="flowguard-model-") as tmp:
        copy = Path(tmp) / "model.txt"
        copy.write_text(text)
        return _compile(copy, sha256, classes, features, where, cache)


def _compile(model_file: Path, sha256: str, classes: int, features: int, where: Path,
             cache: Path | None) -> CompiledModel:
    try:
        from importlib.metadata import version

        import lleaves
        import llvmlite
        from llvmlite import binding
    except ImportError as exc:  # pragma: no cover - a dependency; absent only in broken installs
        raise ModelError(f"cannot compile the model: {exc}") from exc
    try:
        model = lleaves.Model(model_file=str(model_file))
        if model.num_feature() != features or model.num_model_per_iteration() != classes:
            raise ModelError(f"{where}: lleaves reads {model.num_feature()} features and "
                             f"{model.num_model_per_iteration()} classes, not {features} and {classes}")
        key = "|".join((sha256, version("lleaves"), llvmlite.__version__, binding.get_host_cpu_name(),
                        binding.get_host_cpu_features().flatten()))
        name = f"{sha256[:16]}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.o"
        directory = _usable(cache if cache is not None else cache_dir())
        if directory is None:
            model.compile()
        elif (directory / name).is_file():
            model.compile(cache=str(directory / name))
        else:
            # compiled into a private name, then renamed: a reader never sees half an object file
            fd, tmp = tempfile.mkstemp(prefix=".compiling-", suffix=".o", dir=directory)
            os.close(fd)
            os.unlink(tmp)  # lleaves writes the object file where none exists yet
            try:
                model.compile(cache=tmp)
                os.replace(tmp, directory / name)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
    except ModelError:
        raise
    except Exception as exc:  # lleaves raises what LLVM and its parser raise
        raise ModelError(f"{where}: lleaves cannot compile it ({type(exc).__name__}: {exc})") from exc
    return CompiledModel(model, classes)


def _usable(directory: Path | None) -> Path | None:
    """`directory`, made if missing, when it is this user's and only this user can write it."""
    if directory is None:
        return None
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = directory.stat()
    except OSError:
        return None
    if st.st_uid != os.geteuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return None
    return directory if os.access(directory, os.W_OK | os.X_OK) else None
