"""Quantization-aware training models through TF-MOT's own extension points, for the layers TinyML models use.

TF-MOT's default registry quantizes Dense, Conv2D, DepthwiseConv2D and a few layers without weights. Here
every layer gets an annotation before ``quantize_apply``:

- layers the registry knows, with an activation it knows: TF-MOT's own config (``quantize_annotate_layer``);
- Conv1D and Conv2DTranspose: TF-MOT's per-channel conv weight configs, which the registry does not map;
- a weighted layer whose activation TF-MOT cannot fake-quantize (relu6, hard_sigmoid, elu, ...): its
  weights and its output are quantized, the activation runs as it is in between;
- Rescaling, Normalization, LayerNormalization, BatchNormalization on their own: output quantized;
- layout layers (UpSampling1D, Cropping, Identity, noise, dropout, ...): no quantizers.

With ``preserve_sparsity`` (PQAT) the weight quantizers are TF-MOT's sparsity-preserving ones. Layers get
unique names first: TF-MOT splits a SeparableConv2D into a new auto-named ``conv2d`` that collides with a
user's own ``conv2d`` (TF-MOT issue 713). Recurrent layers have no QAT in TF-MOT: refused before training.
Nothing here changes what the model computes; only fake-quantization is added.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np

from ..errors import InputError, first_line

_RECURRENT = ("LSTM", "GRU", "SimpleRNN", "Bidirectional", "RNN", "ConvLSTM1D", "ConvLSTM2D", "TimeDistributed")
_OUTPUT_ONLY = ("TFOpLambda", "Rescaling", "Normalization", "LayerNormalization", "BatchNormalization", "Multiply",
                "Subtract", "Maximum", "Minimum", "Average", "ELU", "PReLU", "Softmax")
_NO_QUANTIZE = ("UpSampling1D", "UpSampling2D", "Cropping1D", "Cropping2D", "Identity", "GaussianNoise",
                "GaussianDropout", "SpatialDropout1D", "SpatialDropout2D", "Dropout", "Permute", "Reshape", "Flatten",
                "ZeroPadding1D", "ZeroPadding2D", "GlobalMaxPooling1D", "GlobalMaxPooling2D", "MaxPooling1D")
# Weighted layers the default registry does not map: their weight attribute and TF-MOT config class.
_WEIGHTED = {"Conv1D": ("kernel", "conv1d"), "Conv2DTranspose": ("kernel", "conv_transpose"),
             "DepthwiseConv1D": ("depthwise_kernel", "plain")}
_REGISTRY_WEIGHTS = {"Dense": ("kernel", "plain"), "Conv2D": ("kernel", "conv"),
                     "DepthwiseConv2D": ("depthwise_kernel", "plain")}


@cache
def _configs() -> dict[str, type]:
    """QuantizeConfig classes, defined once TF-MOT is imported; passed to ``quantize_scope`` by name."""
    from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.prune_preserve import (
        prune_preserve_quantize_registry as pp,
    )
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_configs as configs,
    )
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry as reg,
    )

    class TinyflowPrunePreserveConfig(reg.Default8BitQuantizeConfig):
        def __init__(self, weight_attrs: list[str], activation_attrs: list[str], quantize_output: bool):
            super().__init__(weight_attrs, activation_attrs, quantize_output)
            self.weight_quantizer = pp.PrunePreserveDefault8BitWeightsQuantizer()

    class TinyflowPrunePreserveConvConfig(reg.Default8BitConvQuantizeConfig):
        def __init__(self, weight_attrs: list[str], activation_attrs: list[str], quantize_output: bool):
            super().__init__(weight_attrs, activation_attrs, quantize_output)
            self.weight_quantizer = pp.PrunePreserveDefault8BitConvWeightsQuantizer()

    # Conv1D kernels [k, in, out] are fake-quantized per tensor: TF-MOT's per-channel fake-quant handles only
    # 2-D and 4-D tensors, and a per-channel range behind Conv1D's ExpandDims trips the converter ("tfl.transpose
    # op has mismatched quantized axes"). The converter writes per-tensor int8 weights, which TFLM runs.
    class TinyflowConv1DConfig(reg.Default8BitQuantizeConfig):
        pass

    class TinyflowPrunePreserveConv1DConfig(TinyflowPrunePreserveConfig):
        pass

    return {
        "conv1d": TinyflowConv1DConfig, "pp_conv1d": TinyflowPrunePreserveConv1DConfig,
        "plain": reg.Default8BitQuantizeConfig, "conv": reg.Default8BitConvQuantizeConfig,
        "conv_transpose": reg.Default8BitConvTransposeQuantizeConfig,
        "pp_plain": TinyflowPrunePreserveConfig, "pp_conv": TinyflowPrunePreserveConvConfig,
        "output": configs.Default8BitOutputQuantizeConfig, "none": configs.NoOpQuantizeConfig,
    }


def _scope() -> dict[str, type]:
    return {cls.__name__: cls for cls in _configs().values()}


def _known_activations() -> frozenset[str]:
    from tensorflow_model_optimization.python.core.quantization.keras.quantize_aware_activation import (
        QuantizeAwareActivation as qa,
    )

    return qa._PRE_QUANT_ACTIVATIONS | qa._POST_QUANT_ACTIVATIONS


def _activation_name(layer: Any) -> str | None:
    act = getattr(layer, "activation", None)
    return None if act is None else getattr(act, "__name__", type(act).__name__)


def _weighted_config(layer: Any, attr: str, kind: str, preserve_sparsity: bool) -> Any:
    cls = _configs()[f"pp_{kind}" if preserve_sparsity and kind != "conv_transpose" else kind]
    act = _activation_name(layer)
    if act is None or act in _known_activations():
        return cls([attr], ["activation"] if act is not None else [], False)
    return cls([attr], [], True)  # the activation runs unquantized inside; its output is quantized


def check_supported(model: Any, source: str) -> None:
    """Refuse, before any training, a model with layers TF-MOT cannot make quantization-aware."""
    for layer in model.layers:
        name = type(layer).__name__
        if name in _RECURRENT:
            raise InputError(f"{source}: layer '{layer.name}' ({name}): TF-MOT has no quantization-aware training "
                             "for recurrent layers; drop --qat (post-training int8 quantization deploys it)")


def _annotator(preserve_sparsity: bool) -> Any:
    from .tfenv import tfmot

    q = tfmot().quantization.keras
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry as reg,
    )

    registry = reg.Default8BitQuantizeRegistry()
    known = _known_activations()

    def annotate(layer: Any) -> Any:
        name = type(layer).__name__
        config = None
        if name == "InputLayer":
            return layer
        if name in _WEIGHTED:
            config = _weighted_config(layer, *_WEIGHTED[name], preserve_sparsity)
        elif name in _REGISTRY_WEIGHTS and _activation_name(layer) not in known:
            config = _weighted_config(layer, *_REGISTRY_WEIGHTS[name], preserve_sparsity)
        elif name == "Activation":
            # TF-MOT's own config for the activations it knows; the output's range for the others.
            config = None if _activation_name(layer) in known else _configs()["output"]()
        elif name in _OUTPUT_ONLY and not registry.supports(layer):
            config = _configs()["output"]()
        elif name in _NO_QUANTIZE and not registry.supports(layer):
            config = _configs()["none"]()
        elif not registry.supports(layer) and name not in ("SeparableConv1D", "SeparableConv2D"):
            raise InputError(f"layer '{layer.name}' ({name}): TF-MOT cannot make it quantization-aware and tinyflow "
                             "has no config for it; drop --qat (post-training int8 quantization may deploy it)")
        return q.quantize_annotate_layer(layer, config) if config is not None else q.quantize_annotate_layer(layer)

    return annotate


def _prepared(model: Any) -> Any:
    """A copy TF-MOT can annotate, computing the same function with the same weights:

    - unique, non-default layer names, so the layers TF-MOT creates cannot collide with the user's;
    - an activation TF-MOT cannot fake-quantize inside a layer (Dense(activation="relu6"), ...) moved into an
      Activation layer of its own, so that both the layer's output and the activation's get int8 ranges
      (without the first, the converter has no range for the op between them).
    """
    from .tfenv import tf_keras

    tfk = tf_keras()
    if type(model).__name__ == "Sequential":
        model = tfk.Model(model.inputs, model.outputs)
    config = model.get_config()
    known = _known_activations()
    by_name = {layer.name: layer for layer in model.layers}
    renamed = {name: f"{name}_tf" for name in by_name}
    layers, split = [], {}
    for entry in config["layers"]:
        entry = dict(entry, config=dict(entry["config"]))
        old = entry["config"]["name"]
        act = _activation_name(by_name[old]) if entry["class_name"] != "Activation" else None
        entry["config"]["name"] = entry["name"] = renamed[old]
        layers.append(entry)
        if act is not None and act not in known and "activation" in entry["config"]:
            split[old] = f"{old}_act_tf"
            layers.append({"class_name": "Activation", "name": split[old],
                           "config": {"name": split[old], "activation": entry["config"]["activation"],
                                      "trainable": True, "dtype": entry["config"].get("dtype", "float32")},
                           "inbound_nodes": [[[renamed[old], 0, 0, {}]]]})
            entry["config"]["activation"] = "linear"

    def ref(name: str) -> str:
        return split.get(name) or renamed[name]

    def remap(x: Any) -> Any:
        # A tensor reference is [layer name, node, index, ...], also inside an op layer's kwargs
        # (TFOpLambda's `y`), and an op layer's node is one such list rather than a list of them.
        if isinstance(x, list) and len(x) >= 3 and isinstance(x[0], str) and x[0] in renamed \
                and isinstance(x[1], int):
            return [ref(x[0]), *[remap(v) for v in x[1:]]]
        if isinstance(x, list):
            return [remap(v) for v in x]
        if isinstance(x, dict):
            return {k: remap(v) for k, v in x.items()}
        return x

    for entry in layers:
        if entry["name"] in split.values():
            continue
        entry["inbound_nodes"] = remap(entry.get("inbound_nodes", []))
    config = dict(config, layers=layers,
                  input_layers=[[renamed[n], *rest] for n, *rest in config["input_layers"]],
                  output_layers=[[ref(n), *rest] for n, *rest in config["output_layers"]])
    copy = tfk.Model.from_config(config)
    for name, layer in by_name.items():
        copy.get_layer(renamed[name]).set_weights(layer.get_weights())
    return copy


def _calibrate_ranges(qat_model: Any, base: Any, x: np.ndarray) -> int:
    """Start every activation range at what the float model's outputs span on ``x``; returns how many.

    TF-MOT starts them at [-6, 6] and moves them by an exponential average with decay 0.999 per step, so a
    fine-tuning run of a few hundred steps ends with ranges far from the data's (a coarse int8 scale for
    small activations, clipping for large ones). Post-training calibration would pick the observed range:
    QAT starts from the same point and trains from there.
    """
    from .tfenv import tf_keras

    tfk = tf_keras()
    targets: list[tuple[Any, str, bool]] = []  # (variable, base layer whose output it bounds, is the minimum)
    for layer in qat_model.layers:
        kind = type(layer).__name__
        inner = getattr(layer, "layer", None)
        for w in layer.non_trainable_weights:
            short = w.name.split("/")[-1].split(":")[0]
            if kind == "QuantizeLayer" and short in ("quantize_layer_min", "quantize_layer_max"):
                targets.append((w, "__input__", short.endswith("_min")))
            elif inner is not None and short in ("post_activation_min", "post_activation_max", "output_min",
                                                 "output_max"):
                targets.append((w, inner.name, short.endswith("_min")))
            elif inner is not None and short in ("pre_activation_min", "pre_activation_max"):
                # The input of a softmax/sigmoid/tanh: left at [-6, 6], confident logits clip and tie.
                targets.append((w, f"{inner.name}#pre", short.endswith("_min")))
    if not targets:
        return 0
    names = sorted({n for _, n, _ in targets if n != "__input__" and "#" not in n and _single_output(base, n)})
    outs = tfk.Model(base.inputs, [base.get_layer(n).output for n in names]).predict(x, batch_size=64, verbose=0) \
        if names else []
    outs = outs if isinstance(outs, list) else [outs]
    spans = {n: (float(np.min(o)), float(np.max(o))) for n, o in zip(names, outs, strict=True)}
    spans["__input__"] = (float(np.min(x)), float(np.max(x)))
    for key in sorted({n for _, n, _ in targets if n.endswith("#pre")}):
        name = key[:-4]
        if not _single_output(base, name):
            continue
        layer = base.get_layer(name)
        activation, layer.activation = layer.activation, tfk.activations.linear
        try:
            pre = tfk.Model(base.inputs, layer.output).predict(x, batch_size=64, verbose=0)
        finally:
            layer.activation = activation
        spans[key] = (float(np.min(pre)), float(np.max(pre)))
    if any(name not in spans for _, name, _ in targets):
        # A layer TF-MOT made itself (a separable conv's depthwise half) has no float twin to measure; one
        # range left at [-6, 6] between measured ones clips what the next expects, so measure all or none.
        return 0
    done = 0
    for var, name, is_min in targets:
        lo, hi = spans[name]
        if hi - lo < 1e-3:
            continue  # a layer that outputs one value on x (a dead ReLU): an empty range would give scale 0
        var.assign(min(lo, 0.0) if is_min else max(hi, 0.0))  # int8 ranges hold zero
        done += 1
    return done


def _single_output(model: Any, name: str) -> bool:
    try:
        return not isinstance(model.get_layer(name).output, list | tuple)
    except ValueError:  # a layer TF-MOT created (a separable conv's halves): no float twin to measure
        return False


def quantize_aware(model: Any, preserve_sparsity: bool, source: str = "model",
                   calibration: np.ndarray | None = None) -> Any:
    """The model with fake-quantization for int8 (QAT; PQAT when ``preserve_sparsity``), ready to train.

    ``calibration``: float samples that set the activation ranges to start from (see ``_calibrate_ranges``).
    """
    from .tfenv import tf_keras, tfmot

    check_supported(model, source)
    mot, tfk = tfmot(), tf_keras()
    q = mot.quantization.keras
    base = _prepared(model)
    try:
        # The annotations wrap base's own layer objects, so the weights carry over (TF-MOT's documented way).
        annotated = tfk.models.clone_model(base, clone_function=_annotator(preserve_sparsity))
        with q.quantize_scope(_scope()):
            if preserve_sparsity:
                from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.prune_preserve import (
                    default_8bit_prune_preserve_quantize_scheme as pqat,
                )

                qat_model = q.quantize_apply(annotated, pqat.Default8BitPrunePreserveQuantizeScheme())
            else:
                qat_model = q.quantize_apply(annotated)
    except InputError as e:
        raise InputError(f"{source}: {e}") from None
    except (ValueError, RuntimeError, TypeError, KeyError) as e:
        raise InputError(f"{source}: TF-MOT cannot make this model quantization-aware ({first_line(e)}); drop --qat to "
                         "use post-training quantization") from None
    if calibration is not None and not any(type(layer).__name__ == "BatchNormalization" for layer in base.layers):
        # Not with BatchNormalization: TF-MOT's Conv+BN(+ReLU) transforms move the quantizers, and measured
        # ranges there gave MobileNetV2 a filter zero point the converter refuses (-128 != 0; not understood
        # yet). Such models keep TF-MOT's own starting ranges.
        _calibrate_ranges(qat_model, base, calibration)
    return qat_model
