"""Optimize a tf_keras model with TF-MOT: magnitude pruning (optionally 2:4), QAT, pruning-preserving QAT.

Post-training quantization itself happens in ``convert``; this stage decides what the converter gets
and fine-tunes the model when a method needs it (pruning, QAT), then strips the training wrappers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError
from .dataset import Dataset, class_ids

ProgressFn = Callable[[str, int, int], None]

# Kernels whose weights TF-MOT prunes and whose sparsity tinyflow reports.
_KERNEL_LAYERS = ("Dense", "Conv1D", "Conv2D", "DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D",
                  "SeparableConv2D", "Conv2DTranspose")


@dataclass(frozen=True)
class OptimizeOptions:
    prune: float | None = None  # target sparsity of the prunable kernels, in (0, 1)
    structured_2_4: bool = False  # 2 of every 4 consecutive weights zero (50%)
    qat: bool = False  # quantization-aware training; with pruning this is PQAT
    epochs: int | None = None  # fine-tuning epochs; None picks a default per method
    batch_size: int = 32
    learning_rate: float | None = None
    seed: int = 0

    def check(self, source: str = "options") -> None:
        if self.prune is not None and not 0.0 < self.prune < 1.0:
            raise InputError(f"{source}: --prune {self.prune} is outside (0, 1); give a sparsity such as 0.5")
        if self.structured_2_4 and self.prune not in (None, 0.5):
            raise InputError(f"{source}: --structured-2-4 means exactly 50% sparsity; drop --prune {self.prune} "
                             "or set it to 0.5")
        if self.epochs is not None and self.epochs < 1:
            raise InputError(f"{source}: --epochs must be at least 1")

    @property
    def sparsity(self) -> float | None:
        return 0.5 if self.structured_2_4 else self.prune

    @property
    def needs_training(self) -> bool:
        return self.sparsity is not None or self.qat


@dataclass(frozen=True)
class SparsityReport:
    overall: float  # share of zero weights over all prunable kernels
    per_layer: dict[str, float] = field(default_factory=dict)
    target: float | None = None
    structured_2_4: bool = False
    skipped: dict[str, str] = field(default_factory=dict)  # kernel layers left dense, and why

    @property
    def far_below_target(self) -> bool:
        return self.target is not None and self.overall < 0.8 * self.target


@dataclass(frozen=True)
class OptimizedModel:
    keras_model: Any  # what the converter gets: stripped; quantize-wrapped after QAT
    float_model: Any  # the float model after pruning (the input model when nothing was pruned)
    method: str  # "ptq", "prune+ptq", "qat", "pqat"
    quantization: str  # "int8 post-training" / "int8 quantization-aware training" / ...
    sparsity: SparsityReport
    fine_tune_epochs: int
    loss: str | None


def kernel_sparsity(model: Any) -> dict[str, float]:
    """Zero share of each layer's kernel weights (the ones pruning acts on), by layer name."""
    out = {}
    for layer in model.layers:
        if type(layer).__name__ not in _KERNEL_LAYERS:
            continue
        kernels = [w.numpy() for w in layer.weights if "kernel" in w.name]
        total = sum(k.size for k in kernels)
        if total:
            out[layer.name] = float(sum(np.count_nonzero(k == 0) for k in kernels) / total)
    return out


def _overall(model: Any) -> float:
    zeros = total = 0
    for layer in model.layers:
        if type(layer).__name__ in _KERNEL_LAYERS:
            for w in layer.weights:
                if "kernel" in w.name:
                    k = w.numpy()
                    zeros += int(np.count_nonzero(k == 0))
                    total += k.size
    return zeros / total if total else 0.0


def _loss_for(model: Any, data: Dataset) -> tuple[Any, np.ndarray, str]:
    """Pick the training loss from the labels and the model's last activation."""
    from .tfenv import tf_keras

    tfk = tf_keras()
    y = data.y_train
    assert y is not None
    out_dim = int(model.outputs[0].shape[-1])
    if data.is_classification:
        probe = np.asarray(model(data.x_train[:16], training=False))
        probabilities = bool(np.all(probe >= 0) and np.allclose(probe.sum(axis=-1), 1.0, atol=1e-3))
        ids = class_ids(y)
        if ids.max() >= out_dim:
            raise InputError(f"{data.source}: y_train has class {int(ids.max())} but the model has {out_dim} outputs")
        name = "sparse categorical cross-entropy" + ("" if probabilities else " (from logits)")
        return tfk.losses.SparseCategoricalCrossentropy(from_logits=not probabilities), ids, name
    if y.shape[1:] != tuple(model.outputs[0].shape[1:]):
        raise InputError(f"{data.source}: y_train samples are {y.shape[1:]} but the model outputs "
                         f"{tuple(model.outputs[0].shape[1:])}; they must match for fine-tuning")
    return tfk.losses.MeanSquaredError(), y.astype(np.float32), "mean squared error"


class _EpochProgress:
    def __init__(self, tfk: Any, label: str, epochs: int, progress: ProgressFn | None):
        outer = self

        class Callback(tfk.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                if outer.progress:
                    outer.progress(outer.label, epoch + 1, outer.epochs)

        self.label, self.epochs, self.progress = label, epochs, progress
        self.callback = Callback()


def _fit(model: Any, data: Dataset, loss: Any, y: np.ndarray, epochs: int, lr: float, opts: OptimizeOptions,
         label: str, progress: ProgressFn | None, extra_callbacks: list[Any] = ()) -> None:
    from .tfenv import tf_keras

    tfk = tf_keras()
    model.compile(optimizer=tfk.optimizers.Adam(learning_rate=lr), loss=loss)
    cb = _EpochProgress(tfk, label, epochs, progress).callback
    model.fit(data.x_train, y, batch_size=opts.batch_size, epochs=epochs, verbose=0, shuffle=True,
              callbacks=[*extra_callbacks, cb])


def _prune(model: Any, data: Dataset, loss: Any, y: np.ndarray, opts: OptimizeOptions, epochs: int,
           progress: ProgressFn | None) -> Any:
    from .tfenv import tf_keras, tfmot

    mot, tfk = tfmot(), tf_keras()
    sparsity = opts.sparsity
    assert sparsity is not None
    steps = math.ceil(len(data.x_train) / opts.batch_size) * epochs
    # Reach the target after ~70% of the steps and keep the mask for the rest; the end step must be a
    # multiple of the frequency, otherwise the schedule's last update happens before the target.
    frequency = max(1, min(100, steps // 10))
    end_step = max(frequency, (int(steps * 0.7) // frequency) * frequency)
    schedule = mot.sparsity.keras.PolynomialDecay(initial_sparsity=0.0, final_sparsity=sparsity, begin_step=0,
                                                  end_step=end_step, frequency=frequency)
    kwargs: dict[str, Any] = {"pruning_schedule": schedule}
    if opts.structured_2_4:
        kwargs = {"pruning_schedule": mot.sparsity.keras.ConstantSparsity(0.5, begin_step=0, frequency=frequency),
                  "sparsity_m_by_n": (2, 4)}

    from tensorflow_model_optimization.python.core.sparsity.keras.prune_registry import PruneRegistry

    skipped: dict[str, str] = {}

    def wrap(layer: Any) -> Any:
        kind = type(layer).__name__
        if kind not in _KERNEL_LAYERS:
            return layer
        if not PruneRegistry.supports(layer):
            skipped[layer.name] = f"TF-MOT cannot prune {kind}"
        elif opts.structured_2_4 and (why := _why_not_2_4(layer)):
            skipped[layer.name] = why
        else:
            return mot.sparsity.keras.prune_low_magnitude(layer, **kwargs)
        return layer

    # Wrapping shares the layer (and its weights) with the model it came from: prune a copy, so that the
    # caller's float model stays the unpruned baseline.
    base = tfk.models.clone_model(model)
    base.set_weights(model.get_weights())
    pruned = tfk.models.clone_model(base, clone_function=wrap)
    _fit(pruned, data, loss, y, epochs, opts.learning_rate or 1e-3, opts, "pruning", progress,
         [mot.sparsity.keras.UpdatePruningStep()])
    return mot.sparsity.keras.strip_pruning(pruned), skipped


def _why_not_2_4(layer: Any) -> str | None:
    """Why TF-MOT's 2:4 cannot prune this layer's prunable kernel, or None when it can.

    TF-MOT groups 2:4 blocks along the kernel's input-channel axis; it needs a multiple of 4 there and
    only handles 2-D (Dense) and 4-D (Conv2D, a SeparableConv2D's pointwise) kernels.
    """
    kernel = getattr(layer, "kernel", None)
    if kernel is None:
        kernel = getattr(layer, "pointwise_kernel", None)  # what TF-MOT prunes in a separable conv
    if kernel is None:
        return f"2:4 needs a kernel TF-MOT prunes; {type(layer).__name__} has none"
    shape = tuple(int(d) for d in kernel.shape)
    if len(shape) not in (2, 4):
        return f"TF-MOT's 2:4 handles 2-D and 4-D kernels only; this one is {len(shape)}-D {shape}"
    if shape[-2] % 4:
        return f"2:4 needs input channels in multiples of 4; the kernel has {shape[-2]}"
    return None


def _quantize_aware(model: Any, data: Dataset, loss: Any, y: np.ndarray, opts: OptimizeOptions, epochs: int,
                    preserve_sparsity: bool, progress: ProgressFn | None) -> Any:
    from .qat import quantize_aware

    qat_model = quantize_aware(model, preserve_sparsity, f"model '{model.name}'", data.x_train[:256])
    _fit(qat_model, data, loss, y, epochs, opts.learning_rate or 1e-4, opts, "quantization-aware training",
         progress)
    return qat_model


def optimize(model: Any, data: Dataset | None, opts: OptimizeOptions,
             progress: ProgressFn | None = None) -> OptimizedModel:
    """Prune and/or prepare for quantization; post-training quantization needs no training and no labels."""
    opts.check()
    sparsity_target = opts.sparsity
    if not opts.needs_training:
        return OptimizedModel(model, model, "ptq", "int8 post-training (full integer)",
                              SparsityReport(_overall(model), kernel_sparsity(model)), 0, None)
    what = "--qat" if opts.qat and sparsity_target is None else ("--prune" if not opts.qat else "--prune with --qat")
    if data is None:
        raise InputError(f"{what} fine-tunes the model and needs --data DATA.npz with x_train and y_train; "
                         "without data only post-training quantization is possible")
    if not data.has_labels:
        raise InputError(f"{data.source}: {what} fine-tunes the model and needs y_train/y_test labels; without "
                         "labels only post-training quantization is possible (drop --prune/--qat)")
    if len(model.outputs) != 1:
        raise InputError(f"{what}: fine-tuning models with {len(model.outputs)} outputs is not supported; "
                         "use post-training quantization only")

    from .tfenv import tf_keras

    tf_keras().utils.set_random_seed(opts.seed)
    if opts.qat and sparsity_target is not None:
        # Find out whether TF-MOT can make the model quantization-aware before the pruning run, not after it.
        from .qat import quantize_aware

        quantize_aware(model, True, f"model '{model.name}'")
    loss, y, loss_name = _loss_for(model, data)
    epochs = opts.epochs or (10 if sparsity_target is not None else 5)
    float_model = model
    total_epochs = 0
    skipped: dict[str, str] = {}
    if sparsity_target is not None:
        float_model, skipped = _prune(model, data, loss, y, opts, epochs, progress)
        total_epochs += epochs
    final = float_model
    if opts.qat:
        qat_epochs = opts.epochs or 3
        final = _quantize_aware(float_model, data, loss, y, opts, qat_epochs, sparsity_target is not None,
                                progress)
        total_epochs += qat_epochs
    if sparsity_target is not None and opts.qat:
        method, quantization = "pqat", "int8 pruning-preserving quantization-aware training"
    elif opts.qat:
        method, quantization = "qat", "int8 quantization-aware training"
    else:
        method, quantization = "prune+ptq", "int8 post-training (full integer)"
    report = SparsityReport(_overall(float_model), kernel_sparsity(float_model), sparsity_target, opts.structured_2_4,
                            skipped)
    return OptimizedModel(final, float_model, method, quantization, report, total_epochs, loss_name)
