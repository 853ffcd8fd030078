"""Shared fixtures: real models and data built once per test run (nothing is downloaded); two xdist workers.

The suite runs on two pytest-xdist workers by default (CI has two cores): ``pytest_cmdline_main`` below sets
``-n 2`` unless the command line chose (``-n 0`` or ``-p no:xdist`` runs in one process, ``-n N`` on N
workers). Each test module is one unit of work, so its module fixtures are built once; the model matrix is
split by family instead (its families are the longest units, and each family's cells share one model).
Models that several modules use are built once per run for all workers (``tests/built_once.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tests.built_once import built_once, lock, run_dir

# A bug in tinyflow shows its traceback in the tests instead of the CLI's one-line "internal error".
os.environ.setdefault("TINYFLOW_DEBUG", "1")


WORKERS = 2  # CI's cores


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """``-n 2`` with module-sized units of work unless the command line chose otherwise (set here, not in
    addopts, so that ``-p no:xdist`` and a missing pytest-xdist still run the suite in one process)."""
    if (hasattr(config, "workerinput") or not config.pluginmanager.hasplugin("xdist")
            or config.option.numprocesses is not None or config.option.usepdb):
        return
    config.option.numprocesses = WORKERS
    if config.option.dist == "no":
        config.option.dist = "loadscope"
        config.option.loadscopereorder = False  # units start in collection order: the longest first (below)


# Modules whose tests are units of work by the first part of their parameter id (the model family) rather
# than by module: the matrix is a third of the suite, and a family's cells share one model. Under xdist they
# are collected first, so that the longest units start first and the short modules fill in at the end.
_SPLIT_BY_PARAMETER = ("tests/test_model_matrix.py",)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):  # every worker sorts alike: xdist checks they collected alike
        items.sort(key=lambda item: item.nodeid.split("::", 1)[0] not in _SPLIT_BY_PARAMETER)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    if config.option.dist != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModuleOrFamily(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            if module in _SPLIT_BY_PARAMETER and nodeid.endswith("]"):
                return f"{module}::{nodeid.rsplit('[', 1)[1].split('-', 1)[0]}"
            return module

    return ModuleOrFamily(config, log)


@pytest.fixture(scope="session")
def digits_example(tmp_path_factory) -> tuple[Path, Path]:
    """The bundled digits example: a Keras 3 CNN trained on scikit-learn's digits, and its DATA.npz."""
    from tinyflow.examples import train_digits

    return built_once(tmp_path_factory, "digits", train_digits)


def _residual_data(seed: int = 0, n: int = 600) -> dict[str, np.ndarray]:
    """Three classes of 1-D signals (sine, square, noise), 32 samples x 1 channel; learnable in a few epochs."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, 32, dtype=np.float32)
    y = rng.integers(0, 3, size=n)
    f = rng.uniform(2, 5, size=(n, 1))
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1))
    sine = np.sin(2 * np.pi * f * t + phase)
    square = np.sign(sine)
    noise = rng.normal(0, 0.7, size=(n, 32))
    x = np.where(y[:, None] == 0, sine, np.where(y[:, None] == 1, square, noise))
    x = (x + rng.normal(0, 0.1, size=x.shape)).astype(np.float32)[..., None]
    cut = int(0.75 * n)
    return {"x_train": x[:cut], "y_train": y[:cut], "x_test": x[cut:], "y_test": y[cut:]}


@pytest.fixture(scope="session")
def signal_data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("signals") / "signals.npz"
    np.savez(path, **_residual_data())
    return path


def _residual_model(layers_mod, functional_model, inputs_fn):
    """A residual block on 8x8x1 digits: conv -> conv -> BN -> Add(skip) -> ReLU -> pool -> dense."""
    inp = inputs_fn((8, 8, 1))
    x = layers_mod.Conv2D(8, 3, padding="same", activation="relu")(inp)
    y = layers_mod.Conv2D(8, 3, padding="same")(x)
    y = layers_mod.BatchNormalization()(y)
    x = layers_mod.Add()([x, y])
    x = layers_mod.ReLU()(x)
    x = layers_mod.GlobalAveragePooling2D()(x)
    out = layers_mod.Dense(10, activation="softmax")(x)
    return functional_model(inp, out)


def _train_and_save(model, data_path: Path, path: Path) -> Path:
    data = np.load(data_path)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(data["x_train"], data["y_train"], epochs=15, batch_size=32, verbose=0)
    model.save(path)
    return path


@pytest.fixture(scope="session")
def keras3_residual(tmp_path_factory, digits_example) -> Path:
    """A Keras 3 functional model with a residual Add, trained and saved as .keras (what users save today)."""
    from tinyflow.model.tfenv import keras3

    def build(folder: Path) -> Path:
        keras = keras3()
        keras.utils.set_random_seed(1)
        model = _residual_model(keras.layers, keras.Model, keras.Input)
        return _train_and_save(model, digits_example[1], folder / "residual.keras")

    return built_once(tmp_path_factory, "keras3-residual", build)


@pytest.fixture(scope="session")
def tf_keras_residual_h5(tmp_path_factory, digits_example) -> Path:
    """The same residual architecture built and saved with tf_keras (Keras 2) as legacy .h5."""
    from tinyflow.model.tfenv import tf_keras

    def build(folder: Path) -> Path:
        tfk = tf_keras()
        tfk.utils.set_random_seed(2)
        model = _residual_model(tfk.layers, tfk.Model, tfk.Input)
        return _train_and_save(model, digits_example[1], folder / "residual.h5")

    return built_once(tmp_path_factory, "tf-keras-residual", build)


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory) -> Path:
    """Built corpus models are cached here for the run, all workers (and in CI's workspace between runs)."""
    cache = os.environ.get("TINYFLOW_CORPUS_CACHE")
    return Path(cache) if cache else run_dir(tmp_path_factory) / "corpus"


@pytest.fixture(scope="session")
def corpus_model(corpus_dir, tmp_path_factory):
    """corpus_model(name) -> .tflite bytes of a corpus model, built once per run."""
    from tests.corpus import cached_tflite

    def get(name: str) -> bytes:
        with lock(tmp_path_factory, f"corpus-{name}"):
            return cached_tflite(name, corpus_dir)

    return get


@pytest.fixture(scope="session")
def family_model(tmp_path_factory):
    """family_model(name) -> (model.keras, data.npz) of a ``tests/model_families`` family, trained once per run
    (``save_family``'s defaults). Tests read these files; they write their outputs elsewhere."""
    from tests.model_families import save_family

    return lambda name: built_once(tmp_path_factory, f"family-{name}", lambda folder: save_family(name, folder))
