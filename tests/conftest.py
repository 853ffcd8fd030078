"""Shared fixtures: real models and data built once per test session (nothing is downloaded)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

# A bug in tinyflow shows its traceback in the tests instead of the CLI's one-line "internal error".
os.environ.setdefault("TINYFLOW_DEBUG", "1")


@pytest.fixture(scope="session")
def digits_example(tmp_path_factory) -> tuple[Path, Path]:
    """The bundled digits example: a Keras 3 CNN trained on scikit-learn's digits, and its DATA.npz."""
    from tinyflow.examples import train_digits

    return train_digits(tmp_path_factory.mktemp("digits"))


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

    keras = keras3()
    keras.utils.set_random_seed(1)
    model = _residual_model(keras.layers, keras.Model, keras.Input)
    return _train_and_save(model, digits_example[1], tmp_path_factory.mktemp("k3") / "residual.keras")


@pytest.fixture(scope="session")
def tf_keras_residual_h5(tmp_path_factory, digits_example) -> Path:
    """The same residual architecture built and saved with tf_keras (Keras 2) as legacy .h5."""
    from tinyflow.model.tfenv import tf_keras

    tfk = tf_keras()
    tfk.utils.set_random_seed(2)
    model = _residual_model(tfk.layers, tfk.Model, tfk.Input)
    return _train_and_save(model, digits_example[1], tmp_path_factory.mktemp("k2") / "residual.h5")


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory) -> Path:
    """Built corpus models are cached here for the session (and in CI's workspace between runs)."""
    import os

    cache = os.environ.get("TINYFLOW_CORPUS_CACHE")
    return Path(cache) if cache else tmp_path_factory.mktemp("corpus")


@pytest.fixture(scope="session")
def corpus_model(corpus_dir):
    """corpus_model(name) -> .tflite bytes of a corpus model, built once per session."""
    from tests.corpus import cached_tflite

    return lambda name: cached_tflite(name, corpus_dir)
