"""One trial: build the candidate, reject it before training when the board's figures break the budget,
otherwise train it briefly, convert, evaluate int8 on the host TFLM and plan it again.

The figures come from the plan stage on the converted model, exactly as ``tinyflow plan`` computes them
for the saved ``.tflite``; an untrained model has the same tensors, kernels and scratch as the trained one,
so its arena and flash are the trained model's, known before a single training step.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..boards import Board
from ..errors import InputError, TinyflowError
from ..graph import read_graph
from ..model import Dataset, OptimizeOptions, build_model, convert_int8, keras3, model_report
from ..outdir import OutputDir
from ..plan import BoardPlan, assess
from .spaces import Space

RECORD = "tinyflow"  # the user attribute holding a trial's record
CURVE = "val_accuracy"  # the user attribute holding the validation accuracy after each epoch
TFLITE_NAME, KERAS_NAME, SUMMARY_NAME = "model_int8.tflite", "model.keras", "summary.json"
UNTRAINED_NAME = "untrained_int8.tflite"  # a rejected trial's model, as planned


@dataclass(frozen=True)
class Limits:
    """The user's budget on top of the board's own (SRAM, flash): None means no limit."""

    max_arena: int | None = None  # bytes of the smallest arena that builds (`tinyflow plan`'s "arena")
    max_flash: int | None = None  # bytes: model + firmware estimate
    max_latency_ms: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"max_arena_bytes": self.max_arena, "max_flash_bytes": self.max_flash,
                "max_latency_ms": self.max_latency_ms}


@dataclass(frozen=True)
class Figures:
    """What the plan stage says about a converted candidate on the board."""

    arena_bytes: int | None  # the smallest arena that builds, as `tinyflow plan` reports it
    firmware_arena_bytes: int | None  # with the board's margin: what the firmware reserves
    flash_bytes: int | None
    latency_us: float | None  # the plan's estimate (None: the board has no cost table)
    macs: int
    fits: bool  # the board's own budget: SRAM/PSRAM, flash, no hazards, every op has a kernel
    problems: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"arena_bytes": self.arena_bytes, "firmware_arena_bytes": self.firmware_arena_bytes,
                "flash_bytes": self.flash_bytes, "latency_us": _round(self.latency_us), "macs": self.macs,
                "fits": self.fits, "problems": list(self.problems)}


def _round(x: float | None, digits: int = 1) -> float | None:
    return None if x is None else round(float(x), digits)


def figures_of(bp: BoardPlan) -> Figures:
    problems = [str(h) for h in bp.hazards] + [f"op {i} ({n}) has no TFLM kernel" for i, n in bp.unsupported_ops]
    problems += list(bp.budget.problems) if bp.budget else []
    return Figures(bp.memory.min_arena_bytes if bp.memory else None, bp.budget.arena_bytes if bp.budget else None,
                   bp.budget.flash_total_bytes if bp.budget else None, bp.latency.total_us if bp.latency else None,
                   bp.graph.total_macs, bp.fits, tuple(problems))


def plan_candidate(tflite: bytes, board: Board, source: str, psram: bool | None = None
                   ) -> tuple[Figures, BoardPlan, bytes]:
    """The plan of a converted candidate, with the offline memory plan when it beats TFLM's (as deploy
    writes it), and the bytes the board would run."""
    graph = read_graph(tflite, source)
    bp = assess(graph, board, psram, (), tflite, True)
    return figures_of(bp), bp, bp.tflite or tflite


def violations(fig: Figures, limits: Limits, latency_us: float | None) -> tuple[list[float], list[str]]:
    """Optuna's constraint values (each <= 0 when met) and a sentence per broken limit.

    Always four values (board, arena, flash, latency) so every trial of a study has the same constraints."""
    reasons = list(fig.problems) if not fig.fits else []
    values = [0.0 if fig.fits else 1.0]
    for limit, value, what, unit in ((limits.max_arena, fig.arena_bytes, "arena", "B"),
                                     (limits.max_flash, fig.flash_bytes, "flash", "B")):
        if limit is None or value is None:
            values.append(0.0 if limit is None or fig.fits else 1.0)
            continue
        values.append(value / limit - 1.0)
        if value > limit:
            reasons.append(f"{what} {value:,} {unit} > --max-{what} {limit:,} {unit}")
    if limits.max_latency_ms is None:
        values.append(0.0)
    elif latency_us is None:
        values.append(1.0)
        reasons.append("no latency figure for this board (no cost table): --max-latency-ms needs --port or a board "
                       "with a cost table")
    else:
        values.append(latency_us / (1000 * limits.max_latency_ms) - 1.0)
        if latency_us > 1000 * limits.max_latency_ms:
            reasons.append(f"latency {latency_us / 1000:,.2f} ms > --max-latency-ms {limits.max_latency_ms:g}")
    return values, reasons


@dataclass(frozen=True)
class Training:
    epochs: int = 10  # at most; early stopping and pruning end it sooner
    patience: int = 2
    batch_size: int = 32
    learning_rate: float = 1e-3
    validation_split: float = 0.15


@dataclass(frozen=True)
class TrialContext:
    """Everything a worker's trials share, loaded once per worker."""

    data: Dataset
    input_shape: tuple[int, ...]
    num_classes: int
    board: Board
    space: Space
    limits: Limits
    training: Training
    optimize: OptimizeOptions
    calibration_samples: int
    eval_limit: int | None
    trials_dir: Path  # DIR/trials/<study>: one folder per trained trial
    reject_before_training: bool = True
    port: str | None = None  # measure each feasible trained candidate there ("sim": the simulated board)
    runs: int = 20
    seed: int = 0
    pruner: Any = None  # an Optuna pruner of single-objective curves (MedianPruner), or None
    worker: dict[str, Any] = field(default_factory=dict)

    def split(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The training data and a fixed validation share of it (early stopping and pruning read it)."""
        x, y = self.data.require_train("training"), class_ids_of(self.data.y_train)
        order = np.random.default_rng(0).permutation(len(x))
        n_val = max(1, round(len(x) * self.training.validation_split))
        val, fit = order[:n_val], order[n_val:]
        return x[fit], y[fit], x[val], y[val]


def class_ids_of(y: np.ndarray) -> np.ndarray:
    from ..model import class_ids

    return class_ids(y)


def worker_identity(out_dir: Path) -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "dir": str(out_dir)}


class _Curve:
    """One trial as an Optuna pruner reads it: its validation accuracy after each epoch."""

    def __init__(self, values: list[float]):
        self.intermediate_values = dict(enumerate(values))
        self.last_step = len(values) - 1 if values else None


class _AccuracyView:
    """The study as a single-objective pruner sees it. Optuna prunes single-objective studies only
    (``Trial.report`` refuses a multi-objective one), so each trial's curve lives in a user attribute and
    the pruner (Optuna's MedianPruner) judges it against the other trained trials' curves."""

    def __init__(self, study: Any):
        import optuna

        self._study = study
        self.direction = optuna.study.StudyDirection.MAXIMIZE

    def get_trials(self, deepcopy: bool = False, states: Any = None) -> list[_Curve]:
        trials = self._study.get_trials(deepcopy=False, states=states)
        return [_Curve(t.user_attrs[CURVE]) for t in trials if t.user_attrs.get(CURVE)]


def _keras_callback(trial: Any, ctx: TrialContext, state: dict[str, Any]) -> Any:
    keras = keras3()
    view = _AccuracyView(trial.study)

    class Epochs(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            state["steps"] += 1

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            state["epochs"] += 1
            state["curve"].append(round(float((logs or {}).get("val_accuracy", 0.0)), 5))
            trial.set_user_attr(CURVE, state["curve"])
            if ctx.pruner is not None and ctx.pruner.prune(view, _Curve(state["curve"])):
                state["pruned_at"] = epoch
                self.model.stop_training = True

    return Epochs()


def _outputs_probabilities(model: Any, x: np.ndarray) -> bool:
    probe = np.asarray(model(x[:16], training=False))
    return bool(np.all(probe >= 0) and np.allclose(probe.sum(axis=-1), 1.0, atol=1e-3))


def train(model: Any, trial: Any, ctx: TrialContext, state: dict[str, Any]) -> None:
    keras = keras3()
    x_fit, y_fit, x_val, y_val = ctx.split()
    t = ctx.training
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=not _outputs_probabilities(model, x_fit))
    model.compile(optimizer=keras.optimizers.Adam(t.learning_rate), loss=loss, metrics=["accuracy"])
    stop = keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=t.patience, restore_best_weights=True)
    model.fit(x_fit, y_fit, validation_data=(x_val, y_val), epochs=t.epochs, batch_size=t.batch_size, verbose=0,
              shuffle=True, callbacks=[_keras_callback(trial, ctx, state), stop])


def _safe_name(text: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:80]
    return keep if keep.strip("._") else "study"


def trial_dir(trials_dir: Path, number: int) -> Path:
    return trials_dir / f"{number:05d}"


def latency_for_search(record: dict[str, Any]) -> float:
    """The latency objective: measured, else estimated; MACs stand in on a board with neither."""
    lat = record.get("latency_us")
    return float(lat) if lat is not None else float(record.get("macs") or 0)


def _measure(ctx: TrialContext, tflite: bytes, bp: BoardPlan, path: Path) -> tuple[float, str]:
    """The candidate's median latency on the board at ``ctx.port`` (flashing it first), or on the simulated
    board; and what the figure is: "measured" or "simulated"."""
    from ..device import flash, measure_on

    graph = bp.graph
    if ctx.port != "sim":
        from ..firmware import self_test_vectors, write_project

        fw = write_project(path.parent / "firmware", graph, tflite, bp, "candidate", None,
                           self_test_vectors(tflite, graph, 2, ctx.data.x_test))
        if fw.platformio is None:
            raise InputError(f"{ctx.board.id} has no PlatformIO project to flash; search with --port sim or a "
                             "board tinyflow flashes")
        flash(fw.platformio, ctx.port, ctx.board)
    m = measure_on(None if ctx.port == "sim" else ctx.port, path, graph, tflite, ctx.board, None, ctx.runs)
    return m.latency_us.median, m.kind if m.kind == "simulated" else "measured"


@contextlib.contextmanager
def _untrained_weights_varied(model: Any, seed: int) -> Iterator[None]:
    """Fresh layers hold constant weights (zero biases, BatchNorm's ones and zeros) that the converter drops
    or shares, which a trained model's never are: a zero Dense bias vanishes from the untrained .tflite
    and with it a tensor of the arena's persistent tail. Varying them slightly for the conversion makes the
    untrained model's tensors the trained one's; the model trains from its own initial weights."""
    weights = model.get_weights()
    rng = np.random.default_rng(seed)
    varied = [w + rng.normal(0, 1e-3, w.shape).astype(w.dtype) * max(1.0, float(np.abs(w).max()))
              if w.size and np.issubdtype(w.dtype, np.floating) and float(np.ptp(w)) == 0.0 else w for w in weights]
    model.set_weights(varied)
    try:
        yield
    finally:
        model.set_weights(weights)


def objective(trial: Any, ctx: TrialContext) -> tuple[float, float, float]:
    """The trial: its record goes into the trial's user attributes; returns (accuracy, latency, arena)."""
    import optuna

    start = time.perf_counter()
    seconds: dict[str, float] = {}
    record: dict[str, Any] = {"feasible": None, "trained": False, "pruned": False, "accuracy": None,
                              "arena_bytes": None, "firmware_arena_bytes": None, "flash_bytes": None,
                              "latency_us": None, "latency_source": None, "macs": None, "param_count": None,
                              "epochs": 0, "training_steps": 0, "reason": None, "pre_training": None,
                              "artifacts": None, "worker": ctx.worker, "seconds": seconds, "constraints": None}

    def lap(name: str, since: float) -> float:
        now = time.perf_counter()
        seconds[name] = round(now - since, 3)
        return now

    def finish(values: tuple[float, float, float] | None) -> tuple[float, float, float] | None:
        seconds["total"] = round(time.perf_counter() - start, 3)
        trial.set_user_attr(RECORD, record)
        return values

    # Now, not with the record: a trial whose worker dies still says which worker (host, folder) had it.
    trial.set_user_attr("worker", ctx.worker)
    keras = keras3()
    keras.backend.clear_session()
    keras.utils.set_random_seed(ctx.seed * 100_003 + trial.number)
    source = f"trial {trial.number}"
    t = time.perf_counter()
    try:
        model = ctx.space.build(trial, ctx.input_shape, ctx.num_classes)
        record["param_count"] = int(model.count_params())
        t = lap("build", t)
        if ctx.reject_before_training:
            calibration = ctx.data.require_train("int8 calibration")
            with _untrained_weights_varied(model, trial.number):
                tflite, _ = convert_int8(model, calibration, ctx.calibration_samples, source=source)
            t = lap("convert_untrained", t)
            fig, _, planned = plan_candidate(tflite, ctx.board, source)
            t = lap("plan_untrained", t)
            record["pre_training"] = fig.to_json()
            record.update(arena_bytes=fig.arena_bytes, firmware_arena_bytes=fig.firmware_arena_bytes,
                          flash_bytes=fig.flash_bytes, latency_us=_round(fig.latency_us), macs=fig.macs,
                          latency_source="estimate" if fig.latency_us is not None else None)
            values, reasons = violations(fig, ctx.limits, fig.latency_us)
            if reasons:
                record.update(feasible=False, reason="; ".join(reasons), constraints=values)
                # The untrained model is kept (a few KB): its figures can be checked with `tinyflow plan`.
                dest = trial_dir(ctx.trials_dir, trial.number)
                with OutputDir(dest, force=False) as out:
                    (out.path / UNTRAINED_NAME).write_bytes(planned)
                    out.publish()
                record["artifacts"] = str(dest)
                # Not trained: accuracy 0 stands in; the constraints mark the trial infeasible for the sampler.
                return finish((0.0, latency_for_search(record), float(fig.arena_bytes or 0)))
        state: dict[str, Any] = {"epochs": 0, "steps": 0, "curve": [], "pruned_at": None}
        try:
            train(model, trial, ctx, state)
        finally:
            record.update(trained=state["epochs"] > 0, epochs=state["epochs"], training_steps=state["steps"])
        t = lap("train", t)
        if state["pruned_at"] is not None:
            record.update(pruned=True, reason=f"pruned after epoch {state['pruned_at'] + 1}: validation accuracy "
                                              f"{state['curve'][-1]:.3f} below the median of earlier trials")
            record["constraints"] = [0.0] * 4  # it met the budget before training (or was not checked)
            finish(None)
            raise optuna.TrialPruned(record["reason"])
        with tempfile.TemporaryDirectory(prefix="tinyflow-trial-") as tmp:
            keras_path = Path(tmp) / KERAS_NAME
            model.save(keras_path)
            result = build_model(keras_path, ctx.data, ctx.optimize, ctx.calibration_samples, ctx.eval_limit)
            t = lap("convert_evaluate", t)
            if result.evaluation is None:
                raise InputError(f"{source}: {result.evaluation_error or 'the host TFLM did not evaluate it'}")
            fig, bp, tflite = plan_candidate(result.tflite, ctx.board, source)
            t = lap("plan", t)
            record["fine_tune_epochs"] = result.optimized.fine_tune_epochs if result.optimized else 0
            record.update(accuracy=_round(result.evaluation.int8_accuracy, 5), arena_bytes=fig.arena_bytes,
                          firmware_arena_bytes=fig.firmware_arena_bytes, flash_bytes=fig.flash_bytes,
                          latency_us=_round(fig.latency_us), macs=fig.macs,
                          latency_source="estimate" if fig.latency_us is not None else None)
            values, reasons = violations(fig, ctx.limits, fig.latency_us)
            dest = trial_dir(ctx.trials_dir, trial.number)
            report = {"board": {"id": ctx.board.id, "name": ctx.board.name, "mcu": ctx.board.mcu,
                                "kernel_library": ctx.board.kernel_library, "simulated": ctx.board.simulated},
                      **model_report(result), "memory": bp.to_json(), "device": None, "trial": trial.number}
            with OutputDir(dest, force=False) as out:
                (out.path / TFLITE_NAME).write_bytes(tflite)
                (out.path / KERAS_NAME).write_bytes(keras_path.read_bytes())
                if ctx.port is not None and not reasons:
                    latency, kind = _measure(ctx, tflite, bp, out.path / TFLITE_NAME)
                    record.update(latency_us=_round(latency), latency_source=kind)
                    # Not the report's "device" entry: that is a whole measurement (accuracy, bit-exactness).
                    report["search_latency"] = {"kind": kind, "median_us": _round(latency)}
                    values, reasons = violations(fig, ctx.limits, latency)
                    t = lap("measure", t)
                (out.path / SUMMARY_NAME).write_text(json.dumps(report, indent=1) + "\n")
                out.publish()
            record["artifacts"] = str(dest)
        record.update(feasible=not reasons, reason="; ".join(reasons) or None, constraints=values)
        return finish((float(record["accuracy"] or 0.0), latency_for_search(record),
                       float(record["arena_bytes"] or 0)))
    except TinyflowError as e:
        # The candidate cannot be converted, run or measured: a failed trial, with the reason kept.
        record.update(feasible=False, reason=str(e).splitlines()[0] if str(e) else type(e).__name__)
        finish(None)
        raise


def study_dir_name(study_name: str) -> str:
    return _safe_name(study_name)
