"""Bundled examples built from data that ships in packages: scikit-learn's 8x8 digits, synthetic signals.

Nothing is downloaded: ``load_digits`` reads a file inside scikit-learn, and the signals are generated.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .errors import InputError

DIGITS_VERSION = "v2"


def digits_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """The 1,797 8x8 digits, scaled to [0, 1], as 8x8x1 images; 70/30 stratified train/test split."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise InputError("the digits example needs scikit-learn: pip install scikit-learn") from None
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    y = digits.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    test = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        test[rng.choice(idx, size=round(0.3 * len(idx)), replace=False)] = True
    return {"x_train": x[~test], "y_train": y[~test], "x_test": x[test], "y_test": y[test],
            "labels": np.array([str(d) for d in range(10)])}


def train_digits(out_dir: str | Path, epochs: int = 30, seed: int = 0) -> tuple[Path, Path]:
    """Train a small CNN with Keras 3 and save ``digits.keras`` and ``digits.npz`` into ``out_dir``."""
    from .model import keras3

    keras = keras3()
    keras.utils.set_random_seed(seed)
    arrays = digits_arrays(seed)
    model = keras.Sequential([
        keras.Input((8, 8, 1), name="digit"),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dropout(0.2),
        keras.layers.Dense(10, activation="softmax"),
    ], name="digits_cnn")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(arrays["x_train"], arrays["y_train"], epochs=epochs, batch_size=32, verbose=0)
    return _save(model, arrays, out_dir, "digits")


def signals_arrays(n: int = 1500, length: int = 128, seed: int = 0) -> dict[str, np.ndarray]:
    """Three classes of 1-D signals to tell apart: sine, square wave, noise (random frequency and phase)."""
    rng = np.random.default_rng(seed)
    t = np.arange(length, dtype=np.float32) / length
    y = rng.integers(0, 3, size=n)
    freq = rng.uniform(2, 8, size=(n, 1))
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1))
    sine = np.sin(2 * np.pi * freq * t + phase)
    square = np.sign(sine)
    noise = rng.normal(0, 0.7, size=(n, length))
    x = np.where(y[:, None] == 0, sine, np.where(y[:, None] == 1, square, noise))
    x = (x * rng.uniform(0.5, 1.0, size=(n, 1)) + rng.normal(0, 0.15, size=x.shape)).astype(np.float32)[..., None]
    cut = int(0.75 * n)
    return {"x_train": x[:cut], "y_train": y[:cut], "x_test": x[cut:], "y_test": y[cut:],
            "labels": np.array(["sine", "square", "noise"])}


def train_signals(out_dir: str | Path, epochs: int = 15, seed: int = 0) -> tuple[Path, Path]:
    """A Conv1D time-series classifier (Keras 3) for ``signals_arrays``."""
    from .model import keras3

    keras = keras3()
    keras.utils.set_random_seed(seed)
    arrays = signals_arrays(seed=seed)
    L = keras.layers
    model = keras.Sequential([
        keras.Input((128, 1), name="signal"),
        L.Conv1D(8, 5, strides=2, activation="relu"),
        L.Conv1D(16, 5, strides=2, activation="relu"),
        L.MaxPooling1D(2),
        L.Conv1D(16, 3, activation="relu"),
        L.GlobalAveragePooling1D(),
        L.Dense(3, activation="softmax"),
    ], name="signals_conv1d")
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(arrays["x_train"], arrays["y_train"], epochs=epochs, batch_size=32, verbose=0)
    return _save(model, arrays, out_dir, "signals")


def anomaly_arrays(n_train: int = 1200, n_test: int = 400, width: int = 64,
                   seed: int = 0) -> dict[str, np.ndarray]:
    """Windows of a machine's normal vibration (two harmonics + noise) to reconstruct; half the test windows
    carry a fault (a spike train or a drifting extra tone). ``anomaly`` marks them (1) for the AUC."""
    rng = np.random.default_rng(seed)
    t = np.arange(width, dtype=np.float32) / width

    def normal(k: int) -> np.ndarray:
        f = rng.uniform(3, 4, size=(k, 1))
        p = rng.uniform(0, 2 * np.pi, size=(k, 1))
        return 0.6 * np.sin(2 * np.pi * f * t + p) + 0.25 * np.sin(4 * np.pi * f * t + 2 * p) + \
            rng.normal(0, 0.05, size=(k, width))

    x_train = normal(n_train)
    x_test = normal(n_test)
    anomaly = (np.arange(n_test) % 2 == 1).astype(np.int64)
    faulty = np.flatnonzero(anomaly)
    spikes = (rng.random((len(faulty), width)) < 0.08) * rng.choice([-1.0, 1.0], size=(len(faulty), width)) * 0.8
    tone = 0.4 * np.sin(2 * np.pi * rng.uniform(9, 14, size=(len(faulty), 1)) * t)
    x_test[faulty] += np.where(rng.random((len(faulty), 1)) < 0.5, spikes, tone)
    x_train, x_test = x_train.astype(np.float32), x_test.astype(np.float32)
    return {"x_train": x_train, "y_train": x_train, "x_test": x_test, "y_test": x_test, "anomaly": anomaly}


def train_anomaly(out_dir: str | Path, epochs: int = 40, seed: int = 0) -> tuple[Path, Path]:
    """A small dense autoencoder (Keras 3) trained on normal windows only; reconstruction error flags faults."""
    from .model import keras3

    keras = keras3()
    keras.utils.set_random_seed(seed)
    arrays = anomaly_arrays(seed=seed)
    L = keras.layers
    model = keras.Sequential([
        keras.Input((64,), name="window"),
        L.Dense(32, activation="relu"),
        L.Dense(8, activation="relu"),
        L.Dense(32, activation="relu"),
        L.Dense(64),
    ], name="anomaly_autoencoder")
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="mse")
    model.fit(arrays["x_train"], arrays["x_train"], epochs=epochs, batch_size=32, verbose=0)
    return _save(model, arrays, out_dir, "anomaly")


def _save(model: object, arrays: dict[str, np.ndarray], out_dir: str | Path, name: str) -> tuple[Path, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model_path, data_path = out / f"{name}.keras", out / f"{name}.npz"
    model.save(model_path)
    np.savez(data_path, **arrays)
    return model_path, data_path


EXAMPLES = {"digits": train_digits, "signals": train_signals, "anomaly": train_anomaly}


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tinyflow" / f"digits-{DIGITS_VERSION}"


def bundled_digits() -> tuple[Path, Path]:
    """The digits example model and data, trained once (a few seconds) and cached."""
    cache = _cache_dir()
    model_path, data_path = cache / "digits.keras", cache / "digits.npz"
    if model_path.is_file() and data_path.is_file():
        return model_path, data_path
    cache.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".digits-", dir=cache.parent))
    try:
        train_digits(staging)
        if not cache.exists():
            staging.rename(cache)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return model_path, data_path
