"""A corpus of small int8 models of the shapes TinyML uses, built from code (no downloads).

The planner is checked against the real TFLM interpreter on these models, and the benchmarks measure on
them. Weights are random (seeded) and calibration data is random: what matters here is the graph,
the shapes and realistic quantization parameters, not accuracy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

Builder = Callable[[Any], Any]
# Bump when the way models are built changes (cached .tflite files are keyed by it).
CORPUS_VERSION = "2"


def _mlp(k: Any) -> Any:
    return k.Sequential([k.Input((20,)), k.layers.Dense(32, activation="relu"), k.layers.Dense(16, activation="relu"),
                         k.layers.Dense(4, activation="softmax")], name="mlp")


def _cnn_pool(k: Any) -> Any:
    L = k.layers
    return k.Sequential([k.Input((28, 28, 1)), L.Conv2D(8, 3, activation="relu"), L.MaxPooling2D(),
                         L.Conv2D(16, 3, activation="relu"), L.AveragePooling2D(), L.Flatten(),
                         L.Dense(10, activation="softmax")], name="cnn_pool")


def _ds_block(L: Any, x: Any, filters: int, stride: int = 1) -> Any:
    x = L.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False)(x)
    x = L.BatchNormalization()(x)
    x = L.ReLU()(x)
    x = L.Conv2D(filters, 1, use_bias=False)(x)
    x = L.BatchNormalization()(x)
    return L.ReLU()(x)


def _ds_cnn(k: Any, filters: int = 64) -> Any:
    """The MLPerf Tiny keyword-spotting DS-CNN shape: 49x10 MFCC, one strided conv, 4 separable blocks."""
    L = k.layers
    inp = k.Input((49, 10, 1))
    x = L.Conv2D(filters, (10, 4), strides=(2, 2), padding="same", use_bias=False)(inp)
    x = L.BatchNormalization()(x)
    x = L.ReLU()(x)
    for _ in range(4):
        x = _ds_block(L, x, filters)
    x = L.AveragePooling2D(pool_size=(x.shape[1], x.shape[2]))(x)
    x = L.Flatten()(x)
    return k.Model(inp, L.Dense(12, activation="softmax")(x), name="ds_cnn")


def _res_block(L: Any, x: Any, filters: int, stride: int) -> Any:
    y = L.Conv2D(filters, 3, strides=stride, padding="same", activation="relu")(x)
    y = L.Conv2D(filters, 3, padding="same")(y)
    if stride != 1 or x.shape[-1] != filters:
        x = L.Conv2D(filters, 1, strides=stride)(x)
    return L.ReLU()(L.Add()([x, y]))


def _resnet_block(k: Any) -> Any:
    L = k.layers
    inp = k.Input((16, 16, 3))
    x = L.Conv2D(8, 3, padding="same", activation="relu")(inp)
    x = _res_block(L, x, 8, 1)
    x = L.GlobalAveragePooling2D()(x)
    return k.Model(inp, L.Dense(10, activation="softmax")(x), name="resnet_block")


def _resnet8(k: Any) -> Any:
    """The MLPerf Tiny image-classification ResNet-8 shape (CIFAR-10, 32x32x3)."""
    L = k.layers
    inp = k.Input((32, 32, 3))
    x = L.Conv2D(16, 3, padding="same", activation="relu")(inp)
    x = _res_block(L, x, 16, 1)
    x = _res_block(L, x, 32, 2)
    x = _res_block(L, x, 64, 2)
    x = L.AveragePooling2D(pool_size=(x.shape[1], x.shape[2]))(x)
    x = L.Flatten()(x)
    return k.Model(inp, L.Dense(10, activation="softmax")(x), name="resnet8")


def _concat(k: Any) -> Any:
    L = k.layers
    inp = k.Input((16, 16, 4))
    a = L.Conv2D(8, 1, activation="relu")(inp)
    b = L.Conv2D(8, 3, padding="same", activation="relu")(inp)
    c = L.MaxPooling2D(3, strides=1, padding="same")(inp)
    c = L.Conv2D(4, 1, activation="relu")(c)
    x = L.Concatenate()([a, b, c])
    x = L.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
    x = L.GlobalAveragePooling2D()(x)
    return k.Model(inp, L.Dense(5, activation="softmax")(x), name="concat")


def _branches(k: Any) -> Any:
    """Two branches that each blow up then shrink: running one branch to its end before the other keeps one
    large tensor alive instead of two (what operator reordering exploits)."""
    L = k.layers
    inp = k.Input((16, 16, 4))
    a = L.Conv2D(32, 3, padding="same", activation="relu")(inp)
    b = L.Conv2D(32, 3, padding="same", activation="relu")(inp)
    a = L.MaxPooling2D(4)(a)
    b = L.MaxPooling2D(4)(b)
    x = L.Concatenate()([a, b])
    x = L.Flatten()(x)
    return k.Model(inp, L.Dense(4, activation="softmax")(x), name="branches")


def _conv1d(k: Any) -> Any:
    L = k.layers
    return k.Sequential([k.Input((64, 3)), L.Conv1D(16, 5, activation="relu"), L.MaxPooling1D(2),
                         L.Conv1D(32, 3, activation="relu"), L.GlobalAveragePooling1D(),
                         L.Dense(3, activation="softmax")], name="conv1d")


def _two_outputs(k: Any) -> Any:
    L = k.layers
    inp = k.Input((20,))
    x = L.Dense(32, activation="relu")(inp)
    return k.Model(inp, [L.Dense(4, activation="softmax")(x), L.Dense(1)(x)], name="two_outputs")


def _dense_autoencoder(k: Any, width: int = 64, hidden: tuple[int, ...] = (32,), bottleneck: int = 8) -> Any:
    L = k.layers
    inp = k.Input((width,))
    x = inp
    for h in hidden:
        x = L.Dense(h, activation="relu")(x)
    x = L.Dense(bottleneck, activation="relu")(x)
    for h in reversed(hidden):
        x = L.Dense(h, activation="relu")(x)
    return k.Model(inp, L.Dense(width)(x), name="dense_autoencoder")


def _ad_autoencoder(k: Any) -> Any:
    """The MLPerf Tiny anomaly-detection autoencoder shape: 640 -> 4x128 -> 8 -> 4x128 -> 640."""
    return _dense_autoencoder(k, 640, (128, 128, 128, 128), 8)


def _mobilenet_v1(k: Any, alpha: float = 0.25, size: int = 96, classes: int = 2, channels: int = 3) -> Any:
    """MobileNetV1 (the MLPerf Tiny visual-wake-words shape: alpha 0.25, 96x96x3, 2 classes)."""
    L = k.layers

    def f(c: int) -> int:
        return max(8, int(c * alpha))

    inp = k.Input((size, size, channels))
    x = L.Conv2D(f(32), 3, strides=2, padding="same", use_bias=False)(inp)
    x = L.BatchNormalization()(x)
    x = L.ReLU()(x)
    for filters, stride in [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
                            (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]:
        x = _ds_block(L, x, f(filters), stride)
    x = L.AveragePooling2D(pool_size=(x.shape[1], x.shape[2]))(x)
    x = L.Flatten()(x)
    return k.Model(inp, L.Dense(classes, activation="softmax")(x), name="mobilenet_v1_025_vww")


def _person_detect(k: Any) -> Any:
    """TFLM's person-detection model shape: MobileNetV1 0.25 on a 96x96 grayscale image."""
    return _mobilenet_v1(k, channels=1)


def _mobilenet_v2_035(k: Any) -> Any:
    """keras.applications' MobileNetV2, alpha 0.35 at 96x96 (its last 1x1 conv widens 112 -> 1280 channels)."""
    return k.applications.MobileNetV2(alpha=0.35, input_shape=(96, 96, 3), weights=None, classes=2)


def _patch_mix(k: Any) -> Any:
    """What patch-based inference must reproduce: strided SAME conv, depthwise, a residual Add, a VALID max
    pool, an explicit ZeroPadding2D, a dilated conv, a VALID average pool."""
    L = k.layers
    inp = k.Input((40, 40, 3))
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inp)
    x = L.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = L.Conv2D(16, 1, activation="relu")(x)
    y = L.Conv2D(16, 3, padding="same")(x)
    x = L.Add()([x, y])
    x = L.MaxPooling2D(2)(x)
    x = L.ZeroPadding2D(1)(x)
    x = L.Conv2D(16, 3, dilation_rate=2, activation="relu")(x)
    x = L.DepthwiseConv2D(3, strides=2, padding="same")(x)
    x = L.AveragePooling2D(2)(x)
    x = L.Conv2D(24, 1, activation="relu")(x)
    x = L.GlobalAveragePooling2D()(x)
    return k.Model(inp, L.Dense(3, activation="softmax")(x), name="patch_mix")


def _op_mix(k: Any) -> Any:
    """A small encoder-decoder touching the ops beyond plain CNNs: PAD, LEAKY_RELU, squeeze-and-excitation
    (MEAN, LOGISTIC, broadcast MUL), TANH, SUB, STRIDED_SLICE, RESIZE_NEAREST_NEIGHBOR, TRANSPOSE_CONV."""
    L = k.layers
    inp = k.Input((24, 24, 3))
    x = L.ZeroPadding2D(1)(inp)
    x = L.Conv2D(8, 3, strides=2)(x)
    x = L.LeakyReLU(0.1)(x)
    se = L.GlobalAveragePooling2D(keepdims=True)(x)
    se = L.Conv2D(8, 1, activation="sigmoid")(se)
    x = L.Multiply()([x, se])
    t = L.Conv2D(8, 3, padding="same", activation="tanh")(x)
    x = L.Subtract()([x, t])
    x = L.Cropping2D(1)(x)
    x = L.UpSampling2D(2)(x)
    x = L.Conv2DTranspose(4, 3, strides=2, padding="same", activation="relu")(x)
    x = L.GlobalMaxPooling2D()(x)
    return k.Model(inp, L.Dense(3, activation="softmax")(x), name="op_mix")


# name -> (builder, what it stands for). The planner truth test uses PLANNER_CORPUS; the MLPerf-shaped
# models are bigger and serve the offline-planner benchmark.
MODELS: dict[str, tuple[Builder, str]] = {
    "mlp": (_mlp, "multi-layer perceptron"),
    "cnn_pool": (_cnn_pool, "CNN with max and average pooling"),
    "ds_cnn": (_ds_cnn, "DS-CNN keyword spotting on 49x10x1"),
    "resnet_block": (_resnet_block, "ResNet-style block with a residual Add"),
    "concat": (_concat, "inception-style branches joined by Concatenate"),
    "conv1d": (_conv1d, "Conv1D time-series classifier"),
    "branches": (_branches, "two parallel branches joined by Concatenate"),
    "two_outputs": (_two_outputs, "model with two outputs"),
    "dense_autoencoder": (_dense_autoencoder, "dense autoencoder"),
    "resnet8": (_resnet8, "MLPerf Tiny IC ResNet-8 shape"),
    "mobilenet_v1_025_vww": (_mobilenet_v1, "MLPerf Tiny VWW MobileNetV1 0.25 at 96x96 shape"),
    "ad_autoencoder": (_ad_autoencoder, "MLPerf Tiny AD dense autoencoder shape"),
    "op_mix": (_op_mix, "encoder-decoder with padding, gating, tanh, cropping, upsampling, transposed conv"),
    "person_detect": (_person_detect, "TFLM person-detection shape: MobileNetV1 0.25 on 96x96x1"),
    "mobilenet_v2_035_96": (_mobilenet_v2_035, "keras.applications MobileNetV2 alpha 0.35 at 96x96"),
    "patch_mix": (_patch_mix, "strided, depthwise, residual, pooled, padded and dilated convs for patching"),
}
PLANNER_CORPUS = ("mlp", "cnn_pool", "ds_cnn", "resnet_block", "concat", "conv1d", "two_outputs",
                  "dense_autoencoder", "op_mix")
MLPERF_SHAPED = ("ds_cnn", "mobilenet_v1_025_vww", "resnet8", "ad_autoencoder")


def _normalize_activations(k: Any, model: Any, x: np.ndarray) -> None:
    """Rescale each kernel so its layer's output has unit spread on ``x`` (LSUV-style).

    With random weights, activations shrink by about half per ReLU layer; after the 27 layers of a
    MobileNet they are ~1e-8 and the int8 softmax input scale makes TFLM abort. Real trained models
    do not look like that, so the corpus should not either.
    """
    for layer in model.layers:
        kernels = [w for w in layer.weights if "kernel" in w.name]
        if not kernels:
            continue
        std = float(np.std(k.Model(model.inputs, layer.output)(x, training=False)))
        if std > 0:
            for w in kernels:
                w.assign(w / std)


def build_keras(name: str, seed: int = 0) -> Any:
    from tinyflow.model.tfenv import tf_keras

    k = tf_keras()
    k.utils.set_random_seed(seed)
    model = MODELS[name][0](k)
    _normalize_activations(k, model, _calibration(model, seed, 16))
    return model


def _calibration(model: Any, seed: int, n: int) -> np.ndarray:
    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    return np.random.default_rng(seed).normal(size=(n, *shape)).astype(np.float32)


def build_tflite(name: str, seed: int = 0, calibration_samples: int = 32) -> bytes:
    from tinyflow.model.convert import to_int8_tflite

    model = build_keras(name, seed)
    return to_int8_tflite(model, _calibration(model, seed + 1, calibration_samples), calibration_samples, seed)


def cached_tflite(name: str, cache_dir: str | Path, seed: int = 0) -> bytes:
    """``build_tflite`` once per (name, seed, builder source), kept in ``cache_dir``."""
    import inspect

    source = inspect.getsource(MODELS[name][0]).encode()
    key = hashlib.sha256(source + f"{seed}/{CORPUS_VERSION}".encode()).hexdigest()[:12]
    path = Path(cache_dir) / f"{name}-{key}.tflite"
    if path.is_file():
        return path.read_bytes()
    data = build_tflite(name, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return data
