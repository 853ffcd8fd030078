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
    from .tfenv import keras3

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
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model_path, data_path = out / "digits.keras", out / "digits.npz"
    model.save(model_path)
    np.savez(data_path, **arrays)
    return model_path, data_path


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
