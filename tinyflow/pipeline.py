"""The one place that chains the stages: load -> optimize -> convert -> evaluate on the host (-> later stages).

``deploy`` and ``optimize_model`` are the Python API behind ``tinyflow deploy`` and ``tinyflow optimize``;
each stage is a function of its own module, called here in order, each result passed forward.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import __version__
from .assess import BoardPlan, assess
from .boards import Board, find_board
from .dataset import Dataset, check_matches_input, load_dataset
from .errors import DoesNotFitError, InputError
from .evaluate import HostEvaluation, evaluate
from .graph import ModelGraph, read_graph
from .harness import Measurement, measure_on
from .keras_io import LoadedModel, load_model
from .optimize import OptimizedModel, OptimizeOptions, optimize
from .outdir import OutputDir, write_bytes, write_text
from .progress import Reporter
from .project import FirmwareProject, relocate, self_test_vectors, write_project

SCHEMA_VERSION = 1
TFLITE_NAME = "model_int8.tflite"
REPORT_NAME = "report.json"


@dataclass(frozen=True)
class DeployOptions:
    board: str = "esp32s3"
    board_files: tuple[str, ...] = ()
    data: str | None = None
    optimize: OptimizeOptions = field(default_factory=OptimizeOptions)
    calibration_samples: int = 200
    eval_limit: int | None = None
    psram: bool | None = None  # None: PSRAM only when the arena does not fit internal SRAM
    self_test: int = 4  # test vectors the firmware checks at boot (taken from x_test when there is data)
    port: str | None = None  # a board's serial port ("auto": find it by USB id); None: the simulated board
    runs: int = 50  # timed BENCH runs
    out: str | None = None
    force: bool = False


@dataclass(frozen=True)
class ModelResult:
    """What the optimize/convert/evaluate stages produce, whatever the input format."""

    loaded: LoadedModel
    tflite: bytes
    graph: ModelGraph
    optimized: OptimizedModel | None
    evaluation: HostEvaluation | None
    float_params_bytes: int | None


@dataclass(frozen=True)
class DeployResult:
    out_dir: Path
    report: dict[str, Any]
    model: ModelResult
    board: Board
    plan: BoardPlan
    firmware: FirmwareProject | None
    measurement: Measurement | None

    @property
    def tflite_path(self) -> Path:
        return self.out_dir / TFLITE_NAME


def default_out_dir(model_path: str | Path) -> Path:
    return Path("build") / Path(model_path).stem


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
    with reporter.stage("optimize"):
        optimized = optimize(model, data, opts, reporter.progress)
    if data is None:
        raise InputError(f"{loaded.source}: int8 quantization needs representative samples: give --data DATA.npz "
                         "(x_train is used for calibration)")
    from .convert import to_int8_tflite

    with reporter.stage("convert"):
        return to_int8_tflite(optimized.keras_model, data.x_train, calibration_samples), optimized


def build_model(model_path: str | Path, data: Dataset | None, opts: OptimizeOptions,
                calibration_samples: int = 200, eval_limit: int | None = None,
                reporter: Reporter | None = None) -> ModelResult:
    """load -> optimize -> convert -> host evaluation, with no file output."""
    reporter = reporter or Reporter()
    opts.check()
    with reporter.stage("load"):
        loaded = load_model(model_path)
    if loaded.bridged:
        reporter.note(f"{loaded.source.name}: Keras 3 model rebuilt in tf_keras for TF-MOT (outputs verified equal)")
    tflite, optimized = _convert(loaded, data, opts, calibration_samples, reporter)
    graph = read_graph(tflite, loaded.source)
    if not graph.is_quantized:
        reporter.note(f"{loaded.source.name}: the model is not fully int8; TFLM will run float kernels")
    evaluation = None
    if data is not None:
        with reporter.stage("evaluate"):
            evaluation = evaluate(graph, tflite, data, loaded.keras_model,
                                  optimized.float_model if optimized and optimized.sparsity.target else None,
                                  limit=eval_limit)
    float_params = int(loaded.keras_model.count_params()) * 4 if loaded.keras_model is not None else None
    return ModelResult(loaded, tflite, graph, optimized, evaluation, float_params)


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
            },
            "fine_tune_epochs": opt.fine_tune_epochs if opt else 0,
            "loss": opt.loss if opt else None,
        },
        "accuracy": None,
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
            "output_rmse": _round(ev.output_rmse, 6),
            "int8_runtime": ev.runtime,
        }
    return report


def _tensor_json(t: Any) -> dict[str, Any]:
    q = t.quantization
    return {"name": t.name, "dtype": t.dtype.lower(), "shape": list(t.shape),
            "scale": q.scale if q else None, "zero_point": q.zero_point if q else None}


def _board_json(board: Board) -> dict[str, Any]:
    return {"id": board.id, "name": board.name, "mcu": board.mcu, "kernel_library": board.kernel_library,
            "simulated": board.simulated}


def _header() -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, "tinyflow_version": __version__,
            "created": datetime.now(UTC).isoformat(timespec="seconds")}


def optimize_model(model_path: str | Path, data_path: str | Path | None, opts: OptimizeOptions,
                   out: str | Path | None = None, force: bool = False, calibration_samples: int = 200,
                   reporter: Reporter | None = None) -> tuple[Path, dict[str, Any], ModelResult]:
    """``tinyflow optimize``: writes ``model_int8.tflite`` and ``report.json`` into ``out``."""
    opts.check()
    data = load_dataset(data_path) if data_path else None
    with OutputDir(out or default_out_dir(model_path), force) as outdir:
        result = build_model(model_path, data, opts, calibration_samples, reporter=reporter)
        report = {**_header(), **model_report(result), "artifacts": {"tflite": TFLITE_NAME}}
        write_bytes(outdir.path / TFLITE_NAME, result.tflite)
        write_text(outdir.path / REPORT_NAME, json.dumps(report, indent=2) + "\n")
        path = outdir.publish()
    return path, report, result


def deploy(model_path: str | Path, options: DeployOptions | None = None,
           reporter: Reporter | None = None) -> DeployResult:
    """``tinyflow deploy``: every stage in order, artifacts in ``options.out`` (default ``build/<model>``)."""
    options = options or DeployOptions()
    reporter = reporter or Reporter()
    options.optimize.check()
    board = find_board(options.board, options.board_files)
    data = load_dataset(options.data) if options.data else None
    with OutputDir(options.out or default_out_dir(model_path), options.force) as outdir:
        result = build_model(model_path, data, options.optimize, options.calibration_samples,
                             options.eval_limit, reporter)
        write_bytes(outdir.path / TFLITE_NAME, result.tflite)
        with reporter.stage("plan"):
            plan = assess(result.graph, board, options.psram, options.board_files)
        report = {**_header(), "board": _board_json(board), **model_report(result), "memory": plan.to_json(),
                  "artifacts": {"tflite": TFLITE_NAME}}
        firmware = measurement = None
        if plan.fits:
            with reporter.stage("generate"):
                staging = outdir.path
                firmware = _generate(result, plan, data, Path(model_path).stem, options, staging)
            report["firmware"] = _firmware_json(firmware, staging)
            measurement = _flash_and_measure(result, board, firmware, data, options, outdir.path / TFLITE_NAME,
                                             reporter)
            report["device"] = measurement.to_json()
        write_text(outdir.path / REPORT_NAME, json.dumps(report, indent=2) + "\n")
        path = outdir.publish()
        if firmware is not None:
            firmware = relocate(firmware, staging, path)
    if not plan.fits:
        # The output stays: its report says what does not fit and why; code generation does not run.
        reasons = [str(h) for h in plan.hazards] + [f"op {i} ({n}) has no TFLM kernel" for i, n in plan.unsupported_ops]
        reasons += list(plan.budget.problems) if plan.budget else []
        raise DoesNotFitError(f"{Path(model_path).name} does not fit {board.id}: {'; '.join(reasons)} "
                              f"(details and remedies in {path / REPORT_NAME})")
    return DeployResult(path, report, result, board, plan, firmware, measurement)


def _flash_and_measure(result: ModelResult, board: Board, firmware: FirmwareProject, data: Dataset | None,
                       options: DeployOptions, tflite_path: Path, reporter: Reporter) -> Measurement:
    from .flash import flash
    from .ports import find_port

    port = options.port
    if port is not None:
        if port == "auto":
            port = find_port(board)
        if firmware.platformio is None:
            raise InputError(f"{board.id} has no PlatformIO project to flash; flash the Arduino sketch yourself and "
                             "run `tinyflow measure --port PORT`")
        with reporter.stage(f"flash ({port})"):
            flash(firmware.platformio, port, board)
    else:
        reporter.note("no --port: measuring on the SIMULATED board (host timings, labelled simulated)")
    # The host evaluation ran x_test[:eval_limit] on TFLM already: its outputs are the reference.
    host = result.evaluation.int8_outputs if result.evaluation is not None else None
    with reporter.stage("measure" + (" (simulated)" if port is None else "")):
        return measure_on(port, tflite_path, result.graph, result.tflite, board, data, options.runs,
                          limit=options.eval_limit, host_outputs=host, progress=reporter.progress)


def _generate(result: ModelResult, plan: BoardPlan, data: Dataset | None, name: str, options: DeployOptions,
              out: Path) -> FirmwareProject:
    x = data.x_test if data is not None else None
    st = self_test_vectors(result.tflite, result.graph, options.self_test, x)
    labels = list(data.labels) if data is not None and data.labels else None
    return write_project(out / "firmware", result.graph, result.tflite, plan, name, labels, st)


def _firmware_json(fw: FirmwareProject, root: Path) -> dict[str, Any]:
    return {"platformio": str(fw.platformio.relative_to(root)) if fw.platformio else None,
            "arduino": str(fw.arduino.relative_to(root)) if fw.arduino else None,
            "files": len(fw.files)}
