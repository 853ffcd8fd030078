"""Search spaces: each built-in family is its knobs (data) and a builder; a user's space is their own function.

A built-in family samples its knobs from the ``optuna.Trial`` and builds a Keras 3 model from them; a
user's ``file.py:build`` receives the trial, the data's input shape and class count, samples what it likes
and returns the model (``build(trial, input_shape, num_classes)``).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError, first_line


@dataclass(frozen=True)
class Knob:
    name: str
    choices: tuple[Any, ...] = ()  # categorical
    low: int | None = None  # an integer range low..high, when there are no choices
    high: int | None = None

    def sample(self, trial: Any) -> Any:
        if self.choices:
            return trial.suggest_categorical(self.name, list(self.choices))
        return trial.suggest_int(self.name, self.low, self.high)

    def describe(self) -> str:
        return f"{self.name} in {list(self.choices)}" if self.choices else f"{self.name} {self.low}..{self.high}"


Builder = Callable[[dict[str, Any], tuple[int, ...], int], Any]


@dataclass(frozen=True)
class Space:
    name: str
    task: str  # what the family is for, in a few words
    knobs: tuple[Knob, ...]
    builder: Builder | None = None  # a built-in family: params -> model
    user_build: Callable[..., Any] | None = None  # a user's build(trial, input_shape, num_classes)
    source: str = ""  # "file.py:build" for a user's space

    def build(self, trial: Any, input_shape: tuple[int, ...], num_classes: int) -> Any:
        """The trial's candidate model (Keras), checked against the data's shape and classes."""
        what = self.source or f"space '{self.name}'"
        if self.user_build is not None:
            try:
                model = self.user_build(trial, tuple(input_shape), int(num_classes))
            except Exception as e:
                if type(e).__name__ == "TrialPruned":  # the user's builder may skip a combination on purpose
                    raise
                raise InputError(f"{what} raised {type(e).__name__}: {first_line(e, 200)}; fix the builder") \
                    from None
        else:
            params = {k.name: k.sample(trial) for k in self.knobs}
            model = self.builder(params, tuple(input_shape), int(num_classes))
        check_model(model, tuple(input_shape), int(num_classes), what)
        return model


def check_model(model: Any, input_shape: tuple[int, ...], num_classes: int, what: str) -> None:
    if not (hasattr(model, "inputs") and hasattr(model, "outputs") and hasattr(model, "fit")):
        raise InputError(f"{what} returned {type(model).__name__}, not a Keras model; return a keras.Model "
                         f"taking {list(input_shape)} with {num_classes} outputs")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise InputError(f"{what} returned a model with {len(model.inputs)} inputs and {len(model.outputs)} "
                         "outputs; tinyflow searches single-input, single-output classifiers")
    got = tuple(model.inputs[0].shape[1:])
    if len(got) != len(input_shape) or any(g is not None and g != s for g, s in zip(got, input_shape, strict=False)):
        raise InputError(f"{what} returned a model taking {list(got)} but the data's samples are "
                         f"{list(input_shape)}; build it with keras.Input(shape=input_shape)")
    out = model.outputs[0].shape[-1]
    if out != num_classes:
        raise InputError(f"{what} returned a model with {out} outputs but the data has {num_classes} classes; end "
                         "it with Dense(num_classes)")


def _layers() -> Any:
    from ..model import keras3

    return keras3().layers


def _inputs(input_shape: tuple[int, ...], rank: int) -> tuple[Any, Any]:
    """The input and the tensor a family starts from: feature maps get a channel axis when they lack one."""
    from ..model import keras3

    keras = keras3()
    inp = keras.Input(input_shape, name="features")
    x = inp
    if len(input_shape) == rank - 1:
        x = keras.layers.Reshape((*input_shape, 1))(x)
    elif len(input_shape) != rank:
        want = {3: "2-D features (H x W or H x W x C)", 2: "1-D sequences (T or T x C)"}[rank]
        raise InputError(f"this family takes {want}, but the samples are {list(input_shape)}; choose the dense "
                         "family or reshape the data")
    return inp, x


def _head(x: Any, num_classes: int, inp: Any, name: str) -> Any:
    from ..model import keras3

    keras = keras3()
    out = keras.layers.Dense(num_classes, activation="softmax", name="classes")(x)
    return keras.Model(inp, out, name=name)


def _conv_bn_relu(x: Any, filters: int, kernel: int, strides: int = 1) -> Any:
    L = _layers()
    x = L.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False)(x)
    x = L.BatchNormalization(momentum=0.9)(x)
    return L.ReLU()(x)


def build_ds_cnn(p: dict[str, Any], input_shape: tuple[int, ...], num_classes: int) -> Any:
    """Keyword spotting's depthwise-separable CNN (Zhang et al., "Hello Edge"): a conv, then DS blocks."""
    L = _layers()
    inp, x = _inputs(input_shape, 3)
    x = _conv_bn_relu(x, p["first_filters"], p["first_kernel"], p["first_stride"])
    for _ in range(p["blocks"]):
        x = L.DepthwiseConv2D(p["kernel"], padding="same", use_bias=False)(x)
        x = L.BatchNormalization(momentum=0.9)(x)
        x = L.ReLU()(x)
        x = _conv_bn_relu(x, p["block_filters"], 1)
    x = L.GlobalAveragePooling2D()(x)
    return _head(x, num_classes, inp, "ds_cnn")


def _channels(base: int, width: float) -> int:
    return max(8, round(base * width / 8) * 8)


def build_mobilenet(p: dict[str, Any], input_shape: tuple[int, ...], num_classes: int) -> Any:
    """MobileNet-style image net: width multiplier, input resolution, depth, kernel size; expansion 1 is
    V1's depthwise-separable block, more is V2's inverted residual (with its skip when shapes allow)."""
    L = _layers()
    inp, x = _inputs(input_shape, 3)
    h, w = int(x.shape[1]), int(x.shape[2])
    scale = p["resolution"]
    if scale != 1.0:
        size = (max(4, round(h * scale)), max(4, round(w * scale)))
        if size != (h, w):
            x = L.Resizing(*size, interpolation="bilinear")(x)
    x = _conv_bn_relu(x, _channels(16, p["width"]), 3, 2 if min(x.shape[1], x.shape[2]) >= 16 else 1)
    for i in range(p["blocks"]):
        filters = _channels(16 * 2 ** (i // 2), p["width"])
        stride = 2 if i % 2 == 1 and min(x.shape[1], x.shape[2]) >= 4 else 1
        skip = x
        y = x
        if p["expansion"] > 1:
            y = _conv_bn_relu(y, int(x.shape[-1]) * p["expansion"], 1)
        y = L.DepthwiseConv2D(p["kernel"], strides=stride, padding="same", use_bias=False)(y)
        y = L.BatchNormalization(momentum=0.9)(y)
        y = L.ReLU()(y)
        y = L.Conv2D(filters, 1, use_bias=False)(y)
        y = L.BatchNormalization(momentum=0.9)(y)
        if p["expansion"] == 1:
            y = L.ReLU()(y)  # V1 ends each block with ReLU; V2's bottleneck stays linear
        elif stride == 1 and int(skip.shape[-1]) == filters:
            y = L.Add()([skip, y])
        x = y
    x = L.GlobalAveragePooling2D()(x)
    return _head(x, num_classes, inp, "mobilenet")


def build_conv1d(p: dict[str, Any], input_shape: tuple[int, ...], num_classes: int) -> Any:
    """A 1-D convolutional net for time series: conv blocks with stride or pooling, global average."""
    L = _layers()
    inp, x = _inputs(input_shape, 2)
    for i in range(p["blocks"]):
        filters = p["filters"] * (2 if i >= 2 else 1)
        x = L.Conv1D(filters, p["kernel"], strides=p["stride"] if int(x.shape[1]) >= 8 else 1, padding="same",
                     activation="relu")(x)
        if p["pool"] and int(x.shape[1]) >= 4:
            x = L.MaxPooling1D(2)(x)
    x = L.GlobalAveragePooling1D()(x)
    return _head(x, num_classes, inp, "conv1d")


def build_dense(p: dict[str, Any], input_shape: tuple[int, ...], num_classes: int) -> Any:
    """A small fully connected net on the flattened sample."""
    from ..model import keras3

    L = _layers()
    inp = keras3().Input(input_shape, name="features")
    x = L.Flatten()(inp) if len(input_shape) > 1 else inp
    for _ in range(p["layers"]):
        x = L.Dense(p["units"], activation="relu")(x)
        if p["dropout"]:
            x = L.Dropout(p["dropout"])(x)
    return _head(x, num_classes, inp, "dense")


SPACES: dict[str, Space] = {
    "ds_cnn": Space("ds_cnn", "keyword spotting on 2-D features (MFCC x time)", (
        Knob("first_filters", (8, 16, 32, 64)), Knob("first_kernel", (3, 5)), Knob("first_stride", (1, 2)),
        Knob("blocks", low=1, high=4), Knob("block_filters", (8, 16, 32, 64)), Knob("kernel", (3, 5)),
    ), build_ds_cnn),
    "mobilenet": Space("mobilenet", "images (MobileNetV1/V2-style)", (
        Knob("width", (0.25, 0.5, 0.75, 1.0)), Knob("resolution", (1.0, 0.75, 0.5)), Knob("blocks", low=1, high=5),
        Knob("kernel", (3, 5)), Knob("expansion", (1, 3, 6)),
    ), build_mobilenet),
    "conv1d": Space("conv1d", "time series (T or T x channels)", (
        Knob("blocks", low=1, high=4), Knob("filters", (8, 16, 32)), Knob("kernel", (3, 5, 7)),
        Knob("stride", (1, 2)), Knob("pool", (False, True)),
    ), build_conv1d),
    "dense": Space("dense", "any fixed-size sample, flattened", (
        Knob("layers", low=1, high=3), Knob("units", (16, 32, 64, 128)), Knob("dropout", (0.0, 0.1, 0.25)),
    ), build_dense),
}


def _is_user_space(spec: str) -> bool:
    return ":" in spec or spec.endswith(".py") or "/" in spec


def load_space(spec: str) -> Space:
    """A built-in family by name, or ``file.py:function`` (``file.py`` alone means its ``build``)."""
    if not _is_user_space(spec):
        if spec not in SPACES:
            raise InputError(f"--space {spec}: no such family; give one of {', '.join(SPACES)} or your own "
                             "FILE.py:FUNCTION")
        return SPACES[spec]
    file, _, func = (spec, "", "") if spec.endswith(".py") else spec.rpartition(":")
    file, func = file or spec, func or "build"
    path = Path(file)
    if not path.is_file():
        raise InputError(f"{path}: search space file not found; give --space FILE.py:FUNCTION (FUNCTION takes "
                         "trial, input_shape, num_classes and returns a Keras model)")
    name = f"tinyflow_user_space_{abs(hash(str(path.resolve())))}"
    try:
        module_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module  # dataclasses and pickling look their module up by name
        module_spec.loader.exec_module(module)
    except Exception as e:
        sys.modules.pop(name, None)
        raise InputError(f"{path}: importing the search space failed ({type(e).__name__}: {first_line(e, 200)}); "
                         "fix the file") from None
    fn = getattr(module, func, None)
    if not callable(fn):
        defined = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        raise InputError(f"{path}: has no function '{func}'" + (f" (it defines {', '.join(defined[:5])})"
                                                                 if defined else "") +
                         f"; give --space {path}:FUNCTION")
    return Space(f"{path.name}:{func}", "your own builder", (), user_build=fn, source=f"{path}:{func}")
