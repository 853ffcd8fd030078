"""Host evaluation: the float Keras model against the int8 model run on the real TFLM interpreter."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..graph import ModelGraph, dequantize, quantize
from .dataset import Dataset, check_matches_graph, class_ids
from .tflm_host import run_model, tflm_version


@dataclass(frozen=True)
class HostEvaluation:
    samples: int
    task: str  # "classification", "regression" (values to reconstruct or predict) or "unlabelled"
    float_accuracy: float | None  # the model as given
    float_optimized_accuracy: float | None  # after pruning, before quantization (None when not pruned)
    int8_accuracy: float | None  # the .tflite on TFLM
    agreement: float | None  # share of samples whose int8 top-1 equals the float top-1
    float_mse: float | None  # regression: against y_test
    int8_mse: float | None
    float_auc: float | None  # with anomaly flags: ROC AUC of the per-sample reconstruction error
    int8_auc: float | None
    output_rmse: float  # float vs dequantized int8 outputs: how far quantization moved them
    runtime: str
    int8_outputs: np.ndarray  # raw integer outputs of output 0, one row per sample (the host reference)
    x_test_quantized: np.ndarray


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney: the chance a positive scores above a negative; ties count half)."""
    pos, neg = scores[positive == 1], scores[positive == 0]
    if len(pos) == 0 or len(neg) == 0:
        return None
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def sample_errors(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    n = len(target)
    return np.mean((pred.reshape(n, -1).astype(np.float64) - target.reshape(n, -1)) ** 2, axis=1)


def _top1(y: np.ndarray) -> np.ndarray:
    return np.argmax(y.reshape(len(y), -1), axis=1)


def _predict(model: Any, x: np.ndarray) -> np.ndarray:
    out = model.predict(x, batch_size=256, verbose=0)
    return np.asarray(out[0] if isinstance(out, list) else out, dtype=np.float32)


def evaluate(graph: ModelGraph, tflite: bytes, data: Dataset, float_model: Any | None = None,
             optimized_float_model: Any | None = None, limit: int | None = None,
             arena_size: int | None = None, source: str | Path | None = None) -> HostEvaluation:
    """Evaluate on ``data.x_test`` (the first ``limit`` samples); the Keras models are optional."""
    inp, out = graph.input_tensors()[0], graph.output_tensors()[0]
    check_matches_graph(data, graph)
    n = len(data.x_test) if limit is None else min(limit, len(data.x_test))
    x = data.x_test[:n]
    xq = quantize(x, inp)
    raw = run_model(tflite, [xq], arena_size, source=str(source or graph.sha256[:12]))[0].reshape(n, *out.shape[1:])
    y8 = dequantize(raw, out)

    y = data.y_test[:n] if data.y_test is not None else None
    task = "unlabelled" if y is None else ("classification" if data.is_classification else "regression")
    yf = _predict(float_model, x) if float_model is not None else None
    yo = _predict(optimized_float_model, x) if optimized_float_model is not None else None

    def acc(pred: np.ndarray | None) -> float | None:
        if pred is None or task != "classification":
            return None
        return float(np.mean(_top1(pred) == class_ids(y)))

    def mse(pred: np.ndarray | None) -> float | None:
        if pred is None or task != "regression":
            return None
        return float(np.mean((pred.reshape(y.shape) - y) ** 2))

    def auc(pred: np.ndarray | None) -> float | None:
        if pred is None or task != "regression" or data.anomaly is None:
            return None
        return roc_auc(sample_errors(pred, y), data.anomaly[:n])

    classes = int(np.prod(out.shape[1:])) > 1
    agreement = float(np.mean(_top1(y8) == _top1(yf))) if yf is not None and classes and task != "regression" \
        else None
    rmse = float(np.sqrt(np.mean((y8.reshape(n, -1) - yf.reshape(n, -1)) ** 2))) if yf is not None else 0.0
    return HostEvaluation(
        samples=n,
        task=task,
        float_accuracy=acc(yf),
        float_optimized_accuracy=acc(yo),
        int8_accuracy=acc(y8),
        agreement=agreement,
        float_mse=mse(yf),
        int8_mse=mse(y8),
        float_auc=auc(yf),
        int8_auc=auc(y8),
        output_rmse=rmse,
        runtime=f"tflite-micro {tflm_version()} (host, reference kernels)",
        int8_outputs=raw,
        x_test_quantized=xq,
    )
