"""Small Keras 3 models of the layer families users bring, and a learnable task for each input shape.

Each builder returns an untrained Keras 3 model; ``task`` makes data whose label is a simple function of the
input (so a few epochs learn it and int8 accuracy can be compared with float). Shared by the model-matrix
tests and ``benchmarks``-style checks; nothing here is shipped.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def _keras() -> Any:
    from tinyflow.model import keras3

    return keras3()


def task(shape: tuple[int, ...], n: int = 480, classes: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
    """Label = the level the whole input is shifted by (-0.8, 0, +0.8 under unit noise): learnable by every
    family, global pooling included, in a couple of epochs."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = rng.normal(0.0, 1.0, (n, *shape)).astype(np.float32)
    x += ((y - (classes - 1) / 2) * 0.8).astype(np.float32).reshape(n, *([1] * len(shape)))
    cut = n * 3 // 4
    return {"x_train": x[:cut], "y_train": y[:cut], "x_test": x[cut:], "y_test": y[cut:]}


def _head(x: Any, classes: int = 3) -> Any:
    k = _keras()
    if len(x.shape) == 4:
        x = k.layers.GlobalAveragePooling2D()(x)
    elif len(x.shape) == 3:
        x = k.layers.GlobalAveragePooling1D()(x)
    return k.layers.Dense(classes, activation="softmax")(x)


def conv1d() -> Any:
    k = _keras()
    i = k.Input((64, 2))
    x = k.layers.Conv1D(8, 5, padding="same", activation="relu")(i)
    x = k.layers.MaxPooling1D(2)(x)
    x = k.layers.Conv1D(12, 3, activation="relu")(x)
    return k.Model(i, _head(x))


def separable() -> Any:
    k = _keras()
    i = k.Input((16, 16, 3))
    x = k.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv2d")(i)
    y = k.layers.SeparableConv2D(8, 3, padding="same", activation="relu")(x)
    x = k.layers.Add()([x, y])
    z = k.layers.SeparableConv2D(8, 3, padding="same", activation="relu")(x)
    x = k.layers.Concatenate()([x, z])
    return k.Model(i, _head(x))


def conv_transpose() -> Any:
    k = _keras()
    i = k.Input((8, 8, 2))
    x = k.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(i)
    x = k.layers.Conv2DTranspose(8, 3, strides=2, padding="same", activation="relu")(x)
    return k.Model(i, _head(x))


def upsampling() -> Any:
    k = _keras()
    i = k.Input((8, 8, 2))
    x = k.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(i)
    x = k.layers.UpSampling2D(2)(x)
    x = k.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    return k.Model(i, _head(x))


def normalization() -> Any:
    k = _keras()
    i = k.Input((16, 16, 3))
    x = k.layers.Rescaling(1.0 / 2.0, offset=-0.1)(i)
    x = k.layers.Normalization(mean=0.1, variance=0.25)(x)
    x = k.layers.Conv2D(8, 3, padding="same")(x)
    x = k.layers.ReLU(max_value=6.0)(x)
    return k.Model(i, _head(x))


def layer_norm() -> Any:
    k = _keras()
    i = k.Input((32,))
    x = k.layers.Dense(16)(i)
    x = k.layers.LayerNormalization()(x)
    x = k.layers.Activation("relu")(x)
    return k.Model(i, _head(x))


def _dense_chain(*acts: str) -> Callable[[], Any]:
    def build() -> Any:
        k = _keras()
        i = k.Input((32,))
        x = i
        for act in acts:
            x = k.layers.Dense(16, activation=act)(x)
        return k.Model(i, _head(x))

    return build


# The Keras 3 activations TFLM runs in int8 (elu converts to a float ELU between DEQUANTIZE/QUANTIZE).
activations = _dense_chain("hard_silu", "hard_sigmoid", "silu", "leaky_relu", "relu6", "softsign", "elu")
gelu = _dense_chain("gelu")  # GELU: no TFLM kernel
softplus = _dense_chain("softplus")  # EXP in int8: TFLM's EXP takes float32 only
selu = _dense_chain("selu")  # SELECT: no TFLM kernel


def merge_and_layout() -> Any:
    """UpSampling1D, Multiply/Subtract/Maximum/Minimum, Cropping1D, noise and dropout, Identity, Permute, global max."""
    k = _keras()
    i = k.Input((16, 4))
    a = k.layers.Conv1D(8, 3, padding="same", activation="relu")(i)
    b = k.layers.UpSampling1D(2)(k.layers.MaxPooling1D(2)(a))
    x = k.layers.Multiply()([a, b])
    x = k.layers.Subtract()([x, a])
    x = k.layers.Maximum()([x, b])
    x = k.layers.Minimum()([x, a])
    x = k.layers.Cropping1D((1, 1))(x)
    x = k.layers.SpatialDropout1D(0.1)(x)
    x = k.layers.GaussianNoise(0.1)(x)
    x = k.layers.Identity()(x)
    x = k.layers.Permute((2, 1))(x)
    x = k.layers.GlobalMaxPooling1D()(x)
    return k.Model(i, k.layers.Dense(3, activation="softmax")(x))


def lstm() -> Any:
    k = _keras()
    i = k.Input((16, 4))
    x = k.layers.LSTM(12)(i)
    return k.Model(i, _head(x))


def gru() -> Any:
    k = _keras()
    i = k.Input((16, 4))
    x = k.layers.GRU(12)(i)
    return k.Model(i, _head(x))


def mobilenet_v2() -> Any:
    """MobileNetV2 alpha 0.35 at 96x96, untrained weights (no download), 3 classes."""
    k = _keras()
    return k.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, weights=None, classes=3)


def mobilenet_v3_small(minimalistic: bool = False) -> Callable[[], Any]:
    def build() -> Any:
        k = _keras()
        return k.applications.MobileNetV3Small(input_shape=(32, 32, 3), alpha=0.75, minimalistic=minimalistic,
                                               weights=None, classes=3, include_preprocessing=True)

    return build


FAMILIES: dict[str, tuple[Callable[[], Any], tuple[int, ...]]] = {
    "conv1d": (conv1d, (64, 2)),
    "separable": (separable, (16, 16, 3)),
    "conv_transpose": (conv_transpose, (8, 8, 2)),
    "upsampling": (upsampling, (8, 8, 2)),
    "normalization": (normalization, (16, 16, 3)),
    "layer_norm": (layer_norm, (32,)),
    "activations": (activations, (32,)),
    "gelu": (gelu, (32,)),
    "softplus": (softplus, (32,)),
    "selu": (selu, (32,)),
    "merge_and_layout": (merge_and_layout, (16, 4)),
    "lstm": (lstm, (16, 4)),
    "gru": (gru, (16, 4)),
    "mobilenet_v2": (mobilenet_v2, (96, 96, 3)),
    "mobilenet_v3_small": (mobilenet_v3_small(False), (32, 32, 3)),
    "mobilenet_v3_small_min": (mobilenet_v3_small(True), (32, 32, 3)),
}


# The image networks are far too big to learn the task from a few hundred samples; one epoch gives them
# trained-looking weights (BatchNorm statistics included) at little cost.
_EPOCHS = {"mobilenet_v2": 1, "mobilenet_v3_small": 1, "mobilenet_v3_small_min": 1}


def save_family(name: str, folder: Path, epochs: int | None = None, n: int = 800) -> tuple[Path, Path]:
    """Build, briefly train and save one family's model with its data; returns (model.keras, data.npz)."""
    k = _keras()
    build, shape = FAMILIES[name]
    epochs = _EPOCHS.get(name, 8) if epochs is None else epochs
    k.utils.set_random_seed(0)
    model = build()
    data = task(shape, n=n)
    if epochs:
        model.compile(optimizer=k.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
        model.fit(data["x_train"], data["y_train"], epochs=epochs, batch_size=32, verbose=0)
    folder.mkdir(parents=True, exist_ok=True)
    path, dpath = folder / f"{name}.keras", folder / f"{name}.npz"
    model.save(path)
    np.savez(dpath, **data)
    return path, dpath
