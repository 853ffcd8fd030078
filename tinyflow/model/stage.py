"""The model stages: load -> optimize -> convert -> evaluate on the host, and their part of the report.

The expensive part of a deploy (TensorFlow, fine-tuning, conversion). ``stagecache`` keeps its results so a
re-run with the same inputs skips it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DoesNotFitError, InputError
from ..graph import ModelGraph, read_graph
from ..progress import Reporter
from .dataset import Dataset, check_matches_input, check_matches_output
from .evaluation import HostEvaluation, evaluate
from .load import LoadedModel, load_model
from .optimization import OptimizedModel, OptimizeOptions, optimize
from .tflm_host import TflmSetupError


@dataclass(frozen=True)
class ModelResult:
    """What the optimize/convert/evaluate stages produce, whatever the input format."""

    loaded: LoadedModel
    tflite: bytes
    graph: ModelGraph
    optimized: OptimizedModel | None
    evaluation: HostEvaluation | None
    float_params_bytes: int | None
    evaluation_error: str | None = None  # TFLM refused to set the model up on the host


def _convert(loaded: LoadedModel, data: Dataset | None, opts: OptimizeOptions, calibration_samples: int,
             reporter: Reporter) -> tuple[bytes, OptimizedModel | None]:
    if loaded.tflite is not None:
        if opts.needs_training:
            raise InputError(f"{loaded.source}: --prune/--qat/--structured-2-4 need a Keras model; this .tflite "
                             "is already converted")
        return loaded.tflite, None
    model = loaded.keras_model
    if data is not None:
        check_matches_input(data, tuple(model.inputs[0].shape[1:]), f"model '{loaded.source.name}'")
        out_shape = tuple(d if d is not None else -1 for d in model.outputs[0].shape[1:])
        if all(d > 0 for d in out_shape):
            check_matches_output(data, out_shape, f"model '{loaded.source.name}'")
    if opts.qat:
        from .qat import check_supported

        check_supported(model, str(loaded.source))  # before any training: a refusal costs nothing
    with reporter.stage("optimize"):
        optimized = optimize(model, data, opts, reporter.progress)
    sp = optimized.sparsity
    if sp.far_below_target:
        why = "; ".join(f"{name}: {reason}" for name, reason in list(sp.skipped.items())[:3])
        reporter.note(f"{loaded.source.name}: weight sparsity {sp.overall:.1%} is far below the {sp.target:.0%} asked"
                      + (f" (left dense: {why})" if why else ""))
    if data is None:
        raise InputError(f"{loaded.source}: int8 quantization needs representative samples: give --data DATA.npz "
                         "(x_train is used for calibration)")
    from .convert import convert_int8

    with reporter.stage("convert"):
        tflite, rewrites = convert_int8(optimized.keras_model, data.require_train("int8 calibration"),
                                        calibration_samples, source=loaded.source)
    for note in rewrites:
        reporter.note(f"{loaded.source.name}: {note}")
    return tflite, optimized


def build_model(model_path: str | Path, data: Dataset | None, opts: OptimizeOptions,
                calibration_samples: int = 200, eval_limit: int | None = None,
                reporter: Reporter | None = None) -> ModelResult:
    """load -> optimize -> convert -> host evaluation, with no file output."""
    reporter = reporter or Reporter()
    opts.check()
    with reporter.stage("load"):
        loaded = load_model(model_path, bridge=opts.needs_training)
    if loaded.bridged:
        reporter.note(f"{loaded.source.name}: Keras 3 model rebuilt in tf_keras for TF-MOT (outputs verified equal)")
    tflite, optimized = _convert(loaded, data, opts, calibration_samples, reporter)
    graph = read_graph(tflite, loaded.source)
    floats = graph.float_activations()
    if floats:
        names = [t.name for t in floats]
        shown = ", ".join(n.split(";")[0] for n in names[:3])
        shown += f" and {len(names) - 3} more" if len(names) > 3 else ""
        reporter.note(f"{loaded.source.name}: the model is not fully int8 ({shown or 'float inputs/outputs'} stay "
                      "float32); TFLM runs those ops with float reference kernels, slower than int8")
    evaluation, evaluation_error = None, None
    if graph.unsupported_ops:
        # TFLM cannot build it, so there is nothing to evaluate; the plan says so (exit 1, with its report),
        # as `tinyflow inspect` and `tinyflow plan` do for the same model.
        names = ", ".join(sorted({n for _, n in graph.unsupported_ops}))
        reporter.note(f"{loaded.source.name}: not evaluated on the host: TFLM has no kernel for {names}")
    elif data is not None:
        with reporter.stage("evaluate"):
            try:
                evaluation = evaluate(graph, tflite, data, loaded.keras_model,
                                      optimized.float_model if optimized and optimized.sparsity.target else None,
                                      limit=eval_limit, source=loaded.source)
            except (TflmSetupError, DoesNotFitError) as e:
                # The plan stage says which op and why (a hazard: exit 1 with the reports); the caller raises
                # this if the plan finds nothing.
                evaluation_error = str(e)
                reporter.note(f"{loaded.source.name}: not evaluated on the host: {e}")
    float_params = int(loaded.keras_model.count_params()) * 4 if loaded.keras_model is not None else None
    return ModelResult(loaded, tflite, graph, optimized, evaluation, float_params, evaluation_error)


def _round(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else round(float(x), digits)


def model_report(result: ModelResult) -> dict[str, Any]:
    g, opt, ev = result.graph, result.optimized, result.evaluation
    report: dict[str, Any] = {
        "model": {
            "source": str(result.loaded.source),
            "format": result.loaded.format,
            "tflite_bytes": g.size_bytes,
            "sha256": g.sha256,
            "float_params_bytes": result.float_params_bytes,
            "ops": list(g.op_names),
            "macs": g.total_macs,
            "param_bytes": g.param_bytes,
            "inputs": [_tensor_json(t) for t in g.input_tensors()],
            "outputs": [_tensor_json(t) for t in g.output_tensors()],
        },
        "optimize": {
            "method": opt.method if opt else "none (given as .tflite)",
            "quantization": opt.quantization if opt else "as given",
            "sparsity": {
                "overall": _round(opt.sparsity.overall) if opt else None,
                "target": opt.sparsity.target if opt else None,
                "structured_2_4": opt.sparsity.structured_2_4 if opt else False,
                "per_layer": {k: _round(v) for k, v in opt.sparsity.per_layer.items()} if opt else {},
                "skipped": dict(opt.sparsity.skipped) if opt else {},
            },
            "fine_tune_epochs": opt.fine_tune_epochs if opt else 0,
            "loss": opt.loss if opt else None,
        },
        "accuracy": None,
        "evaluation_error": result.evaluation_error,
    }
    if ev is not None:
        report["accuracy"] = {
            "task": ev.task,
            "samples": ev.samples,
            "float": _round(ev.float_accuracy),
            "float_optimized": _round(ev.float_optimized_accuracy),
            "int8": _round(ev.int8_accuracy),
            "agreement": _round(ev.agreement),
            "float_mse": _round(ev.float_mse, 6),
            "int8_mse": _round(ev.int8_mse, 6),
            "float_auc": _round(ev.float_auc),
            "int8_auc": _round(ev.int8_auc),
            "output_rmse": _round(ev.output_rmse, 6),
            "int8_runtime": ev.runtime,
        }
    return report


def _tensor_json(t: Any) -> dict[str, Any]:
    q = t.quantization
    return {"name": t.name, "dtype": t.dtype.lower(), "shape": list(t.shape),
            "scale": q.scale if q else None, "zero_point": q.zero_point if q else None}
