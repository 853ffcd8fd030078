"""Rebuild a Keras 3 model in tf_keras (Keras 2) with the same weights, so that TF-MOT can optimize it.

TF-MOT only accepts tf_keras models, and Keras 3 ``.keras`` files do not load in tf_keras. The bridge
reads the Keras 3 model's functional graph (its config), creates the equivalent tf_keras layer for each
layer TinyML models use, copies the weights and checks that both models give the same outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError

_CONV = ("filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate", "groups", "activation",
         "use_bias")
_DEPTHWISE = ("kernel_size", "strides", "padding", "depth_multiplier", "data_format", "dilation_rate", "activation",
              "use_bias")
_SEPARABLE = ("filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate", "depth_multiplier",
              "activation", "use_bias")
_POOL = ("pool_size", "strides", "padding", "data_format")
_GLOBAL_POOL = ("data_format", "keepdims")
_CONV_T = ("filters", "kernel_size", "strides", "padding", "output_padding", "data_format", "dilation_rate",
           "activation", "use_bias")
_RNN = ("units", "activation", "recurrent_activation", "use_bias", "return_sequences", "return_state",
        "go_backwards", "unroll")

# Keras 3 class name -> the config keys carried over to the tf_keras layer of the same name. Initializers,
# regularizers and constraints are not carried: weights are copied, and fine-tuning runs without them.
_LAYERS: dict[str, tuple[str, ...]] = {
    "Dense": ("units", "activation", "use_bias"),
    "Conv1D": _CONV,
    "Conv2D": _CONV,
    "DepthwiseConv1D": _DEPTHWISE,
    "DepthwiseConv2D": _DEPTHWISE,
    "SeparableConv1D": _SEPARABLE,
    "SeparableConv2D": _SEPARABLE,
    "BatchNormalization": ("axis", "momentum", "epsilon", "center", "scale"),
    "MaxPooling1D": _POOL,
    "MaxPooling2D": _POOL,
    "AveragePooling1D": _POOL,
    "AveragePooling2D": _POOL,
    "GlobalAveragePooling1D": _GLOBAL_POOL,
    "GlobalAveragePooling2D": _GLOBAL_POOL,
    "GlobalMaxPooling1D": _GLOBAL_POOL,
    "GlobalMaxPooling2D": _GLOBAL_POOL,
    "Activation": ("activation",),
    "ReLU": ("max_value", "negative_slope", "threshold"),
    "LeakyReLU": ("negative_slope",),
    "ELU": ("alpha",),
    "PReLU": ("shared_axes",),
    "Softmax": ("axis",),
    "Flatten": ("data_format",),
    "Reshape": ("target_shape",),
    "Permute": ("dims",),
    "Rescaling": ("scale", "offset"),
    "Dropout": ("rate", "noise_shape", "seed"),
    "SpatialDropout1D": ("rate",),
    "SpatialDropout2D": ("rate",),
    "GaussianNoise": ("stddev",),
    "Add": (),
    "Subtract": (),
    "Multiply": (),
    "Average": (),
    "Maximum": (),
    "Minimum": (),
    "Concatenate": ("axis",),
    "ZeroPadding1D": ("padding",),
    "ZeroPadding2D": ("padding", "data_format"),
    "Conv1DTranspose": (*_CONV_T,),
    "Conv2DTranspose": (*_CONV_T,),
    "UpSampling1D": ("size",),
    "UpSampling2D": ("size", "data_format", "interpolation"),
    "Cropping1D": ("cropping",),
    "Cropping2D": ("cropping", "data_format"),
    "Normalization": ("axis", "mean", "variance", "invert"),
    "LayerNormalization": ("axis", "epsilon", "center", "scale"),
    "LSTM": (*_RNN, "unit_forget_bias"),
    "GRU": (*_RNN, "reset_after"),
    "SimpleRNN": ("units", "activation", "use_bias", "return_sequences", "return_state", "go_backwards", "unroll"),
    "Identity": (),
    "GaussianDropout": ("rate",),
}

# Keras 3 operations (keras.src.ops.numpy) applied to tensors in a functional model, e.g. MobileNetV3's
# hard-swish `x * (relu6(x + 3) * (1 / 6))`. They become real tf_keras layers (TF-MOT cannot wrap tf_keras'
# op layers): two tensors -> Add/Subtract/Multiply; a tensor and a number -> Rescaling(scale, offset).
_OPS = ("Add", "Subtract", "Multiply", "Divide", "TrueDivide")


def _op_layer(tfk: Any, op: str, a: Any, b: Any, name: str, source: Path) -> Any:
    tensor_a, tensor_b = not isinstance(a, int | float), not isinstance(b, int | float)
    if tensor_a and tensor_b and op in ("Add", "Subtract", "Multiply"):
        return getattr(tfk.layers, op)(name=name)([a, b])
    if tensor_a != tensor_b:
        x, c = (a, float(b)) if tensor_a else (b, float(a))
        inverse = 1.0 / c if c else None
        scale_offset = {("Add", True): (1.0, c), ("Add", False): (1.0, c), ("Multiply", True): (c, 0.0),
                        ("Multiply", False): (c, 0.0), ("Subtract", True): (1.0, -c), ("Subtract", False): (-1.0, c),
                        ("Divide", True): (inverse, 0.0), ("TrueDivide", True): (inverse, 0.0)}
        scale, offset = scale_offset.get((op, tensor_a), (None, None))
        if scale is not None:
            return tfk.layers.Rescaling(scale, offset, name=name)(x)
    raise InputError(f"{source}: operation '{name}' ({op} of {type(a).__name__} and {type(b).__name__}) cannot be "
                     "rebuilt in tf_keras; write it as a layer")

# Keras 3 activation names that tf_keras spells differently, or computes differently under the same name
# (Keras 3's hard_sigmoid is relu6(x + 3) / 6; tf_keras's is clip(0.2 x + 0.5)). The bridge's output
# check compares the two models, so a wrong entry here cannot pass silently.
_ACTIVATION_ALIASES = {"silu": "swish"}


@cache
def _activation_functions() -> dict[str, Callable[[Any], Any]]:
    from .tfenv import tensorflow, tf_keras

    tf = tensorflow()
    # Registered, so that tf_keras can clone the rebuilt model (pruning and QAT do) by name.
    register = tf_keras().utils.register_keras_serializable(package="tinyflow")

    def hard_sigmoid(x: Any) -> Any:
        return tf.nn.relu6(x + 3.0) / 6.0

    def hard_swish(x: Any) -> Any:
        return x * tf.nn.relu6(x + 3.0) / 6.0

    def leaky_relu(x: Any) -> Any:
        return tf.nn.leaky_relu(x, alpha=0.2)  # Keras 3's default negative_slope

    def relu6(x: Any) -> Any:
        return tf.nn.relu6(x)

    def log_softmax(x: Any) -> Any:
        return tf.nn.log_softmax(x)

    functions = {"hard_sigmoid": hard_sigmoid, "hard_silu": hard_swish, "hard_swish": hard_swish,
                 "leaky_relu": leaky_relu, "relu6": relu6, "log_softmax": log_softmax}
    return {name: register(fn) for name, fn in functions.items()}


def supported_layers() -> tuple[str, ...]:
    return tuple(sorted(_LAYERS))


def _activation(value: Any, layer: str, source: Path) -> Any:
    if isinstance(value, dict):  # Keras 3 may store a named activation as a serialized function
        value = value.get("config", value.get("class_name"))
    if not isinstance(value, str):
        raise InputError(f"{source}: layer '{layer}' uses a custom activation {value!r}; only named activations "
                         "(relu, relu6, sigmoid, tanh, softmax, ...) can be bridged to tf_keras")
    return _activation_functions().get(value) or _ACTIVATION_ALIASES.get(value, value)


def _tf_keras_layer(tfk: Any, class_name: str, config: dict[str, Any], source: Path) -> Any:
    name = config.get("name", class_name)
    kwargs: dict[str, Any] = {}
    for key in _LAYERS[class_name]:
        if key not in config:
            continue
        value = config[key]
        if key in ("activation", "recurrent_activation"):
            value = _activation(value, name, source)
        if isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    if class_name == "LeakyReLU":  # Keras 3 renamed tf_keras' alpha
        kwargs = {"alpha": kwargs.get("negative_slope", 0.3)}
    if class_name == "ReLU" and kwargs.get("max_value") is None:
        kwargs.pop("max_value", None)
    if class_name == "Dropout" and kwargs.get("noise_shape") is None:
        kwargs.pop("noise_shape", None)
    if class_name in ("Conv1D", "Conv2D") and kwargs.get("groups", 1) == 1:
        kwargs.pop("groups", None)
    if class_name == "Normalization":
        # Keras 3 keeps adapted statistics as weights and given ones as config; tf_keras takes either.
        for key in ("mean", "variance"):
            if isinstance(kwargs.get(key), tuple):
                kwargs[key] = np.asarray(kwargs[key], dtype=np.float32)
        if kwargs.get("mean") is None:
            kwargs.pop("mean", None)
            kwargs.pop("variance", None)
    if class_name == "LayerNormalization" and config.get("rms_scaling"):
        raise InputError(f"{source}: layer '{name}' (LayerNormalization with rms_scaling) has no tf_keras "
                         "equivalent; drop --prune/--qat (post-training quantization converts it as it is)")
    if class_name.endswith("Transpose") and kwargs.get("output_padding") is None:
        kwargs.pop("output_padding", None)
    try:
        return getattr(tfk.layers, class_name)(name=name, **kwargs)
    except (TypeError, ValueError) as e:
        raise InputError(f"{source}: layer '{name}' ({class_name}) cannot be rebuilt in tf_keras: {e}") from None


def _unsupported(source: Path, name: str, class_name: str) -> InputError:
    if class_name in ("Functional", "Sequential", "Model"):
        return InputError(f"{source}: layer '{name}' is a nested model; tinyflow's Keras 3 bridge needs a flat "
                          "model, so rebuild it without the sub-model")
    return InputError(f"{source}: layer '{name}' ({class_name}) is not supported by tinyflow's Keras 3 bridge; "
                      f"supported layers: {', '.join(supported_layers())}")


def _flat_config(model: Any) -> tuple[list[dict], list, list]:
    """(layers, input keys, output keys) of a Keras 3 model, Sequential models made functional."""
    config = model.get_config()
    if type(model).__name__ != "Sequential":
        ins, outs = config["input_layers"], config["output_layers"]
        # A single input/output is stored as one [name, node, index] triple rather than a list of them.
        ins = [ins] if ins and isinstance(ins[0], str) else ins
        outs = [outs] if outs and isinstance(outs[0], str) else outs
        return config["layers"], [tuple(i) for i in ins], [tuple(o) for o in outs]
    layers = list(config["layers"])
    if not layers or layers[0]["class_name"] != "InputLayer":
        shape = getattr(model, "input_shape", None)
        if shape is None:
            raise InputError("the Keras 3 Sequential model has no input shape; build it with keras.Input(...)")
        layers.insert(0, {"class_name": "InputLayer", "config": {"name": "input", "batch_shape": list(shape)}})
    previous = layers[0]["config"]["name"]
    chained = [dict(layers[0], name=previous)]
    for layer in layers[1:]:
        ref = {"class_name": "__keras_tensor__", "config": {"keras_history": [previous, 0, 0]}}
        name = layer["config"]["name"]
        chained.append(dict(layer, name=name, inbound_nodes=[{"args": [ref], "kwargs": {}}]))
        previous = name
    return chained, [(chained[0]["name"], 0, 0)], [(previous, 0, 0)]


def _resolve(arg: Any, tensors: dict[tuple, Any]) -> Any:
    if isinstance(arg, dict) and arg.get("class_name") == "__keras_tensor__":
        return tensors[tuple(arg["config"]["keras_history"])]
    if isinstance(arg, list | tuple):
        return [_resolve(a, tensors) for a in arg]
    return arg


def rebuild_in_tf_keras(model: Any, source: Path) -> Any:
    """A tf_keras model with the Keras 3 ``model``'s graph and weights, checked to give the same outputs."""
    from .tfenv import tf_keras

    tfk = tf_keras()
    layers, input_keys, output_keys = _flat_config(model)
    tensors: dict[tuple, Any] = {}
    built: dict[str, Any] = {}
    for entry in layers:
        class_name, config = entry["class_name"], entry["config"]
        name = entry.get("name", config.get("name"))
        if class_name == "InputLayer":
            shape = config.get("batch_shape") or config.get("batch_input_shape")
            tensors[(name, 0, 0)] = tfk.Input(shape=tuple(shape[1:]), name=name)
            continue
        if entry.get("module", "").startswith("keras.src.ops") and class_name in _OPS:
            # `x + 3.0` or `x * y` on Keras 3 tensors is an operation, not a layer (MobileNetV3's hard-swish).
            for node_index, node in enumerate(entry.get("inbound_nodes", [])):
                a, b = [_resolve(x, tensors) for x in node["args"]]
                tensors[(name, node_index, 0)] = _op_layer(tfk, class_name, a, b, f"{name}_{node_index}", source)
            continue
        if class_name not in _LAYERS:
            raise _unsupported(source, name, class_name)
        if class_name == "UpSampling1D":
            # tf_keras' UpSampling1D concatenates one slice per time step (TFLM's CONCATENATION takes at most
            # 10); as a 2-D nearest upsampling of a width-1 image it is RESIZE_NEAREST_NEIGHBOR, same values.
            for node_index, node in enumerate(entry.get("inbound_nodes", [])):
                (x,) = [_resolve(a, tensors) for a in node["args"]]
                steps, channels, size = int(x.shape[1]), int(x.shape[2]), int(config.get("size", 2))
                y = tfk.layers.Reshape((steps, 1, channels), name=f"{name}_{node_index}_as_2d")(x)
                y = tfk.layers.UpSampling2D((size, 1), name=f"{name}_{node_index}")(y)
                y = tfk.layers.Reshape((steps * size, channels), name=f"{name}_{node_index}_as_1d")(y)
                tensors[(name, node_index, 0)] = y
            continue
        layer = built[name] = _tf_keras_layer(tfk, class_name, config, source)
        for node_index, node in enumerate(entry.get("inbound_nodes", [])):
            if any(_resolve(v, tensors) is not v for v in node.get("kwargs", {}).values()):
                raise InputError(f"{source}: layer '{name}' takes a tensor keyword argument (e.g. a mask); "
                                 "tinyflow's Keras 3 bridge cannot rebuild it")
            args = [_resolve(a, tensors) for a in node["args"]]
            out = layer(*args)
            outs = out if isinstance(out, list | tuple) else [out]
            for tensor_index, t in enumerate(outs):
                tensors[(name, node_index, tensor_index)] = t

    def lookup(keys: list) -> list:
        return [tensors[k] for k in keys]

    rebuilt = tfk.Model(lookup(input_keys), lookup(output_keys), name=model.name)
    for layer in model.layers:
        if layer.name in built:
            try:
                built[layer.name].set_weights(layer.get_weights())
            except ValueError as e:
                raise InputError(f"{source}: weights of layer '{layer.name}' do not fit its tf_keras twin: {e}") \
                    from None
    _check_same_outputs(model, rebuilt, source, _diagnose_layer_factory(model, rebuilt, built))
    return rebuilt


def _random_inputs(model: Any, count: int = 4) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.normal(size=(count, *[d or 1 for d in t.shape[1:]])).astype(np.float32) for t in model.inputs]


def _as_list(y: Any) -> list[np.ndarray]:
    return [np.asarray(a) for a in (y if isinstance(y, list | tuple) else [y])]


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    scale = max(1.0, float(np.max(np.abs(a))) if a.size else 1.0)
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=1e-4, atol=1e-4 * scale))


def _diagnose_layer_factory(k3: Any, k2: Any, built: dict[str, Any]) -> Callable[[Any], str | None]:
    def first_divergent_layer(inputs: Any) -> str | None:
        import keras

        for layer in k3.layers:
            twin = built.get(layer.name)
            if twin is None:
                continue
            a = keras.Model(k3.inputs, layer.output)(inputs)
            b = type(k2)(k2.inputs, twin.output)(inputs)
            if not all(_close(x, y) for x, y in zip(_as_list(a), _as_list(b), strict=False)):
                return layer.name
        return None

    return first_divergent_layer


def _check_same_outputs(k3: Any, k2: Any, source: Path, diagnose: Callable[[Any], str | None]) -> None:
    inputs = _random_inputs(k3)
    a = _as_list(k3(inputs if len(inputs) > 1 else inputs[0], training=False))
    b = _as_list(k2(inputs if len(inputs) > 1 else inputs[0], training=False))
    if len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=False)):
        return
    layer = diagnose(inputs if len(inputs) > 1 else inputs[0])
    where = f" (first difference at layer '{layer}')" if layer else ""
    raise InputError(f"{source}: the tf_keras rebuild of this Keras 3 model gives different outputs{where}; "
                     "that layer's options are not bridged yet, save the model as .h5 from tf_keras instead")
