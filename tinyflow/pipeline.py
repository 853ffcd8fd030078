"""The one place that chains the stages: load -> optimize -> convert -> evaluate -> plan -> generate -> flash
-> measure -> report.

``deploy`` and ``optimize_model`` are the Python API behind ``tinyflow deploy`` and ``tinyflow optimize``;
each stage is a function of its own module, called here in order, each result passed forward.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__, stagecache
from .boards import Board, find_board
from .device import Measurement, is_url, measure_on, remote_flash_refusal
from .errors import DoesNotFitError, InputError
from .firmware import FirmwareProject, relocate, self_test_vectors, write_project
from .graph import ModelGraph, read_graph
from .model import Dataset, ModelResult, OptimizeOptions, build_model, load_dataset, model_report
from .outdir import OutputDir, write_bytes, write_text
from .plan import BoardPlan, assess, with_kernels
from .progress import Reporter
from .report import write_reports

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
    offline_plan: bool = True  # write an offline memory plan into the model when it beats TFLM's
    rewrite: bool = True  # with offline_plan: an exact graph rewrite (patches, channel groups) when it is smaller
    max_latency_increase: float = 0.20  # the most a rewrite may add to the latency estimate
    out: str | None = None
    force: bool = False
    kernels: str = "board"  # "reference": TFLM's reference kernels (ESP-NN off on ESP-IDF boards)
    kernel_library_version: str | None = None  # None: the board file's

    def model_settings(self) -> str:
        """What the model stages depend on besides the files (the stage cache key)."""
        return repr((self.optimize, self.calibration_samples, self.eval_limit))


@dataclass(frozen=True)
class DeployResult:
    out_dir: Path
    report: dict[str, Any]
    model: ModelResult | None  # None when the model stages were reused from the previous run
    board: Board
    plan: BoardPlan
    firmware: FirmwareProject | None
    measurement: Measurement | None

    @property
    def tflite_path(self) -> Path:
        return self.out_dir / TFLITE_NAME

    @property
    def reused(self) -> bool:
        return self.model is None


class _Timed(Reporter):
    """Passes everything to the caller's reporter and keeps each stage's wall time for the report."""

    def __init__(self, inner: Reporter):
        self.inner = inner
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        with self.inner.stage(name):
            yield
        self.seconds[name] = round(time.perf_counter() - start, 3)

    def progress(self, label: str, done: int, total: int) -> None:
        self.inner.progress(label, done, total)

    def note(self, text: str) -> None:
        self.inner.note(text)


def default_out_dir(model_path: str | Path) -> Path:
    return Path("build") / Path(model_path).stem


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


def _model_stages(model_path: str | Path, data: Dataset | None, options: DeployOptions, dest: Path,
                  staging: Path, reporter: Reporter) -> tuple[ModelResult | None, stagecache.CachedModel]:
    key = stagecache.model_key(model_path, options.data, options.model_settings())
    cached = stagecache.load(dest, key)
    if cached is not None:
        reporter.note("model, data and options unchanged since the last run: reusing its optimized model")
        stagecache.save(staging, key, cached)
        return None, cached
    result = build_model(model_path, data, options.optimize, options.calibration_samples, options.eval_limit,
                         reporter)
    host = result.evaluation.int8_outputs if result.evaluation is not None else None
    entry = stagecache.CachedModel(model_report(result), result.tflite, host)
    stagecache.save(staging, key, entry)
    return result, entry


def deploy(model_path: str | Path, options: DeployOptions | None = None,
           reporter: Reporter | None = None) -> DeployResult:
    """``tinyflow deploy``: every stage in order, artifacts in ``options.out`` (default ``build/<model>``)."""
    options = options or DeployOptions()
    timed = _Timed(reporter or Reporter())
    options.optimize.check()
    if options.port is not None and is_url(options.port):
        raise remote_flash_refusal(options.port)  # before any work: deploy flashes, and that is the user's step
    board = with_kernels(find_board(options.board, options.board_files), options.kernels,
                         options.kernel_library_version)
    # A .tflite needs no training data: measuring and evaluating it read x_test (and y_test) only.
    data = load_dataset(options.data, need_train=Path(model_path).suffix.lower() != ".tflite") \
        if options.data else None
    dest = Path(options.out or default_out_dir(model_path))
    with OutputDir(dest, options.force) as outdir:
        staging = outdir.path
        result, model = _model_stages(model_path, data, options, dest, staging, timed)
        graph = read_graph(model.tflite, model_path)
        with timed.stage("plan"):
            plan = assess(graph, board, options.psram, options.board_files, model.tflite, options.offline_plan,
                          options.rewrite, options.max_latency_increase)
        # With an offline plan the model carries it (same ops, same weights, same outputs); a rewritten graph
        # computes the same outputs with other ops. That model is what the firmware embeds and the board runs.
        tflite, graph = plan.tflite or model.tflite, plan.graph
        write_bytes(staging / TFLITE_NAME, tflite)
        report = {**_header(), "board": _board_json(board), **model.report, "memory": plan.to_json(),
                  "artifacts": {"tflite": TFLITE_NAME}}
        if plan.tflite is not None:
            # the deployed model's ops: a rewrite adds slices, pads and concatenations to the converter's
            report["model"] = {**report["model"], "tflite_bytes": graph.size_bytes, "sha256": graph.sha256,
                               "ops": list(graph.op_names),
                               "offline_memory_plan": plan.offline is not None,
                               "graph_rewrite": None if plan.rewrite is None else plan.rewrite.rewrite.describe()}
        if plan.fits and model.report.get("evaluation_error"):
            # TFLM refused the model on the host and the plan has no explanation: nothing to generate.
            raise InputError(model.report["evaluation_error"])
        firmware = measurement = None
        # A model that does not fit still gets its reports (they say why); these stay empty then.
        report["firmware"] = report["device"] = None
        if plan.fits:
            with timed.stage("generate"):
                firmware = _generate(tflite, graph, plan, data, Path(model_path).stem, options, staging)
            report["firmware"] = _firmware_json(firmware, staging)
            measurement = _flash_and_measure(tflite, graph, model.host_outputs, board, firmware, data, options,
                                             staging / TFLITE_NAME, timed)
            report["device"] = measurement.to_json()
        report["timings_s"] = dict(timed.seconds)
        report["reused_model_stages"] = result is None
        report["artifacts"].update({"report_md": "report.md", "report_html": "report.html"})
        write_text(staging / REPORT_NAME, json.dumps(report, indent=2) + "\n")
        write_reports(report, staging)
        path = outdir.publish()
        if firmware is not None:
            firmware = relocate(firmware, staging, path)
    if not plan.fits:
        # The output stays: its report says what does not fit and why; code generation does not run.
        reasons = [str(h) for h in plan.hazards] + [f"op {i} ({n}) has no TFLM kernel" for i, n in plan.unsupported_ops]
        reasons += list(plan.budget.problems) if plan.budget else []
        raise DoesNotFitError(f"{Path(model_path).name} does not fit {board.id}: {'; '.join(reasons)} "
                              f"(details and remedies in {path / 'report.html'})")
    return DeployResult(path, report, result, board, plan, firmware, measurement)


def _flash_and_measure(tflite: bytes, graph: ModelGraph, host_outputs: np.ndarray | None, board: Board,
                       firmware: FirmwareProject, data: Dataset | None, options: DeployOptions, tflite_path: Path,
                       reporter: Reporter) -> Measurement:
    from .device import find_port, flash

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
    with reporter.stage("measure" + (" (simulated)" if port is None else "")):
        return measure_on(port, tflite_path, graph, tflite, board, data, options.runs, limit=options.eval_limit,
                          host_outputs=host_outputs, progress=reporter.progress)


def _generate(tflite: bytes, graph: ModelGraph, plan: BoardPlan, data: Dataset | None, name: str,
              options: DeployOptions, out: Path) -> FirmwareProject:
    x = data.x_test if data is not None else None
    st = self_test_vectors(tflite, graph, options.self_test, x)
    labels = list(data.labels) if data is not None and data.labels else None
    return write_project(out / "firmware", graph, tflite, plan, name, labels, st)


def _firmware_json(fw: FirmwareProject, root: Path) -> dict[str, Any]:
    return {"platformio": str(fw.platformio.relative_to(root)) if fw.platformio else None,
            "arduino": str(fw.arduino.relative_to(root)) if fw.arduino else None,
            "files": len(fw.files)}
