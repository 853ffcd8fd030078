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

from ..errors import InputError

_RECURRENT = ("LSTM", "GRU", "SimpleRNN", "Bidirectional", "RNN", "ConvLSTM1D", "ConvLSTM2D", "TimeDistributed")
_OUTPUT_ONLY = ("Rescaling", "Normalization", "LayerNormalization", "BatchNormalization", "Multiply", "Subtract",
                "Maximum", "Minimum", "Average", "ELU", "PReLU", "Softmax", "Activation")
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
        "pp_conv_transpose": TinyflowPrunePreserveConvConfig,
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
        elif name == "Activation" and _activation_name(layer) in known:
            config = None  # TF-MOT's own Activation config
        elif name in _OUTPUT_ONLY and not registry.supports(layer):
            config = _configs()["output"]()
        elif name in _NO_QUANTIZE and not registry.supports(layer):
            config = _configs()["none"]()
        elif not registry.supports(layer) and name not in ("SeparableConv1D", "SeparableConv2D"):
            raise InputError(f"layer '{layer.name}' ({name}): TF-MOT cannot make it quantization-aware and tinyflow "
                             "has no config for it; drop --qat (post-training int8 quantization may deploy it)")
        return q.quantize_annotate_layer(layer, config) if config is not None else q.quantize_annotate_layer(layer)

    return annotate


def _renamed(model: Any) -> Any:
    """A copy with unique, non-default layer names (same weights), so TF-MOT's new layers cannot collide."""
    from .tfenv import tf_keras

    tfk = tf_keras()

    def clone(layer: Any) -> Any:
        cfg = layer.get_config()
        cfg["name"] = f"{layer.name}_tf"
        return type(layer).from_config(cfg)

    copy = tfk.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def quantize_aware(model: Any, preserve_sparsity: bool, source: str = "model") -> Any:
    """The model with fake-quantization for int8 (QAT; PQAT when ``preserve_sparsity``), ready to train."""
    from .tfenv import tf_keras, tfmot

    check_supported(model, source)
    mot, tfk = tfmot(), tf_keras()
    q = mot.quantization.keras
    base = _renamed(model)
    try:
        # The annotations wrap base's own layer objects, so the weights carry over (TF-MOT's documented way).
        annotated = tfk.models.clone_model(base, clone_function=_annotator(preserve_sparsity))
        with q.quantize_scope(_scope()):
            if preserve_sparsity:
                from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.prune_preserve import (
                    default_8bit_prune_preserve_quantize_scheme as pqat,
                )

                return q.quantize_apply(annotated, pqat.Default8BitPrunePreserveQuantizeScheme())
            return q.quantize_apply(annotated)
    except InputError as e:
        raise InputError(f"{source}: {e}") from None
    except (ValueError, RuntimeError, TypeError, KeyError) as e:
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise InputError(f"{source}: TF-MOT cannot make this model quantization-aware ({first}); drop --qat to "
                         "use post-training quantization") from None
