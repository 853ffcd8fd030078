"""``search()``: the Python API behind ``tinyflow search``, and the worker each local process runs."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import __version__
from ..boards import Board, find_board
from ..errors import InputError, OutputExistsError, TinyflowError
from ..model import Dataset, OptimizeOptions, class_ids, kept_converter, load_dataset
from ..outdir import write_text
from ..progress import Reporter
from . import outputs
from .spaces import Space, load_space
from .study import (
    WorkerJob,
    default_storage,
    make_pruner,
    make_sampler,
    open_storage,
    open_study,
    run_local_workers,
    shown_url,
    watch_parent,
)
from .trial import Limits, Training, TrialContext, objective, study_dir_name, worker_identity

MARKER = ".tinyflow-search"
DEFAULT_STUDY = "tinyflow-search"


@dataclass(frozen=True)
class SearchOptions:
    board: str = "esp32s3"
    board_files: tuple[str, ...] = ()
    space: str = "ds_cnn"  # a built-in family (ds_cnn, mobilenet, conv1d, dense) or FILE.py:FUNCTION
    trials: int = 20  # this run's trials (a resumed study gets this many more)
    out: str | None = None  # default build/search
    max_arena: int | None = None
    max_flash: int | None = None
    max_latency_ms: float | None = None
    optimize: OptimizeOptions = field(default_factory=OptimizeOptions)  # prune/QAT after training
    storage: str | None = None  # an Optuna storage URL; default sqlite:///OUT/study.db
    study: str = DEFAULT_STUDY
    workers: int = 1
    timeout_min: float | None = None
    epochs: int = 10
    patience: int = 2
    batch_size: int = 32
    learning_rate: float = 1e-3
    validation_split: float = 0.15
    calibration_samples: int = 200
    eval_limit: int | None = None
    sampler: str = "tpe"
    pruner: str = "median"
    startup_trials: int = 5  # random trials before the sampler (and the pruner) start judging
    seed: int | None = 0
    reject_before_training: bool = True  # False only to measure what the rejection saves (the benchmark)
    port: str | None = None  # measure each feasible trained candidate there; "sim": the simulated board
    runs: int = 20
    deploy_best: bool = False
    heartbeat_s: float = 30.0  # a dead worker's trial is marked FAIL about 3x this later
    force: bool = False

    def check(self) -> None:
        self.optimize.check()
        for name in ("trials", "workers", "epochs", "batch_size", "calibration_samples", "runs"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} must be at least 1")
        for name in ("max_arena", "max_flash", "max_latency_ms", "timeout_min", "eval_limit"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise InputError(f"--{name.replace('_', '-')} {value}: must be positive")
        if not 0 < self.validation_split < 1:
            raise InputError(f"validation_split {self.validation_split}: must be in (0, 1)")
        if self.patience < 0 or self.startup_trials < 0:
            raise InputError("--patience and --startup-trials cannot be negative")
        if self.port not in (None, "sim"):
            from ..device import is_url, remote_flash_refusal

            if is_url(self.port):
                raise remote_flash_refusal(self.port)  # every candidate is flashed: that needs the board here

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @staticmethod
    def from_json(doc: dict[str, Any]) -> SearchOptions:
        doc = dict(doc)
        doc["optimize"] = OptimizeOptions(**doc["optimize"])
        doc["board_files"] = tuple(doc["board_files"])
        return SearchOptions(**doc)


@dataclass(frozen=True)
class SearchResult:
    out_dir: Path
    study: str
    storage: str  # without its password
    trials: tuple[dict[str, Any], ...]  # every trial of the study, as trials.json lists them
    pareto: tuple[dict[str, Any], ...]
    best: dict[str, Any] | None
    best_tflite: Path | None
    best_keras: Path | None
    report_html: Path
    counts: dict[str, int]
    new_trials: int  # how many this run added
    note: str | None = None  # e.g. the best model's files are on another worker's host
    deploy: Any = None  # the DeployResult of --deploy-best

    @property
    def feasible(self) -> tuple[dict[str, Any], ...]:
        return tuple(outputs.candidates(list(self.trials)))


def _classes(data: Dataset) -> int:
    if not data.has_labels or not data.is_classification:
        raise InputError(f"{data.source}: search maximizes classification accuracy: give integer class ids (or "
                         "one-hot rows) as y_train and y_test")
    found = int(max(class_ids(data.y_train).max(), class_ids(data.y_test).max())) + 1
    return max(found, len(data.labels)) if data.labels else found


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def prepare_out(dest: Path, force: bool, study: str, storage: str) -> Path:
    """The search folder: new, empty, or one a search wrote (it resumes there). A folder holding other files
    is the user's: only --force writes into it (beside them; nothing of theirs is removed)."""
    if dest.is_symlink():
        raise OutputExistsError(f"{dest}: is a symbolic link; tinyflow does not write through links: give the real "
                                "folder as --out")
    if dest.exists() and not dest.is_dir():
        raise OutputExistsError(f"{dest}: exists and is a file, not a folder; choose another --out")
    if dest.is_dir() and not (dest / MARKER).is_file() and any(dest.iterdir()) and not force:
        raise OutputExistsError(f"{dest}: holds files a search did not write; choose another --out, or pass --force "
                                "to write the search's files beside them")
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"{dest}: cannot create the search folder ({e.strerror}); choose another --out") from None
    write_text(dest / MARKER, json.dumps({"written_by": "tinyflow", "what": "tinyflow search", "study": study,
                                          "storage": storage}, indent=1) + "\n")
    return dest


@dataclass(frozen=True)
class _Setup:
    data: Dataset
    board: Board
    space: Space
    limits: Limits
    input_shape: tuple[int, ...]
    num_classes: int
    identity: dict[str, Any]


def _setup(data_path: str | Path, options: SearchOptions) -> _Setup:
    board = find_board(options.board, options.board_files)
    space = load_space(options.space)
    data = load_dataset(data_path)
    data.require_train("training the candidates")
    classes = _classes(data)
    limits = Limits(options.max_arena, options.max_flash, options.max_latency_ms)
    shape = tuple(int(d) for d in data.x_train.shape[1:])
    identity = {"board": board.id, "space": space.name, "limits": limits.to_json(),
                "data_sha256": _sha256(Path(data_path)), "input_shape": list(shape), "classes": classes}
    return _Setup(data, board, space, limits, shape, classes, identity)


def _context(s: _Setup, options: SearchOptions, out_dir: Path) -> TrialContext:
    training = Training(options.epochs, options.patience, options.batch_size, options.learning_rate,
                        options.validation_split)
    return TrialContext(s.data, s.input_shape, s.num_classes, s.board, s.space, s.limits, training, options.optimize,
                        options.calibration_samples, options.eval_limit,
                        out_dir / "trials" / study_dir_name(options.study), options.reject_before_training,
                        options.port, options.runs, options.seed or 0,
                        make_pruner(options.pruner, options.startup_trials), worker_identity(out_dir))


def _trial_line(r: dict[str, Any]) -> str:
    n = r["number"]
    if r["state"] == "PRUNED":
        return f"trial {n}: {r['reason']}"
    if r["state"] == "FAIL":
        return f"trial {n}: failed: {r['reason']}"
    figures = f"arena {r['arena_bytes']:,} B, flash {r['flash_bytes']:,} B" if r["arena_bytes"] is not None else ""
    if r["latency_us"] is not None:
        figures += f", latency {r['latency_us'] / 1000:.2f} ms ({r['latency_source']})"
    if not r["trained"]:
        return f"trial {n}: rejected before training: {r['reason']} ({figures})"
    acc = f"accuracy {100 * r['accuracy']:.1f} %" if r["accuracy"] is not None else "not evaluated"
    if not r["feasible"]:
        return f"trial {n}: {acc} but infeasible after training: {r['reason']}"
    return f"trial {n}: {acc}, {figures}"


class _Progress:
    """Trials done, feasible, best so far: from the storage, so it counts every worker's trials."""

    def __init__(self, study: Any, reporter: Reporter, total: int, before: set[int]):
        self.study, self.reporter, self.total, self.before = study, reporter, total, before
        self.seen: set[int] = set(before)

    def __call__(self, *_: Any) -> None:
        records = [outputs.record_of(t) for t in self.study.get_trials(deepcopy=False)]
        finished = [r for r in records if r["state"] not in ("RUNNING", "WAITING")]
        for r in finished:
            if r["number"] not in self.seen:
                self.seen.add(r["number"])
                self.reporter.note(_trial_line(r))
        done = len([r for r in finished if r["number"] not in self.before])
        best = outputs.choose(outputs.pareto(records))
        feasible = len(outputs.candidates(records))
        label = f"trials ({feasible} feasible" + (f", best trial {best['number']}: {100 * best['accuracy']:.1f} %)"
                                                  if best else ")")
        self.reporter.progress(label, min(done, self.total), self.total)


def _run_worker(s: _Setup, options: SearchOptions, out_dir: Path, trials: int, index: int,
                callback: Any = None) -> None:
    seed = None if options.seed is None else options.seed + index
    storage = open_storage(options.storage or default_storage(out_dir), options.heartbeat_s)
    study = open_study(storage, options.study, make_sampler(options.sampler, seed, options.startup_trials),
                       s.identity)
    ctx = _context(s, options, out_dir)
    with kept_converter():
        study.optimize(lambda trial: objective(trial, ctx), n_trials=trials,
                       timeout=options.timeout_min * 60 if options.timeout_min else None,
                       catch=(TinyflowError,), callbacks=[callback] if callback else None, gc_after_trial=True)


def worker_main(job_path: str) -> int:
    """A local worker process (``--workers K``): its share of the trials on the shared storage."""
    watch_parent()
    job = WorkerJob(**json.loads(Path(job_path).read_text()))
    options = SearchOptions.from_json(job.options)
    try:
        _run_worker(_setup(job.data, options), options, Path(job.out_dir), job.trials, job.index)
    except TinyflowError as e:
        print(f"tinyflow: error: {e}", file=sys.stderr)
        return e.exit_code
    return 0


def search(data: str | Path, options: SearchOptions | None = None, reporter: Reporter | None = None) -> SearchResult:
    """``tinyflow search``: the most accurate models that fit the board's budget, from a model family."""
    options = options or SearchOptions()
    reporter = reporter or Reporter()
    options.check()
    s = _setup(data, options)
    url = options.storage or default_storage(Path(options.out or "build/search").absolute())
    out_dir = prepare_out(Path(options.out or "build/search").absolute(), options.force, options.study, shown_url(url))
    options = dataclasses.replace(options, storage=url)
    storage = open_storage(url, options.heartbeat_s)
    study = open_study(storage, options.study, make_sampler(options.sampler, options.seed, options.startup_trials),
                       s.identity)
    before = {t.number for t in study.get_trials(deepcopy=False)}
    progress = _Progress(study, reporter, options.trials, before)
    with reporter.stage(f"search ({options.trials} trials, {options.workers} worker"
                        f"{'s' if options.workers > 1 else ''}, study '{options.study}')"):
        if options.workers == 1:
            _run_worker(s, options, out_dir, options.trials, 0, progress)
        else:
            k = options.workers
            shares = [options.trials // k + (1 if i < options.trials % k else 0) for i in range(k)]
            jobs = [WorkerJob(options.to_json(), str(Path(data).absolute()), str(out_dir), n, i)
                    for i, n in enumerate(shares) if n]
            run_local_workers(jobs, out_dir, progress)
    return finish(study, s, options, out_dir, data, before, reporter)


def finish(study: Any, s: _Setup, options: SearchOptions, out_dir: Path, data: str | Path, before: set[int],
           reporter: Reporter) -> SearchResult:
    from .report import write_report

    records = [outputs.record_of(t) for t in study.get_trials(deepcopy=False)]
    front = sorted(outputs.pareto(records), key=lambda r: (-r["accuracy"], r["number"]))
    best = outputs.choose(front)
    tflite, keras, note = outputs.write_best(out_dir, best, options.force)
    if note and best is not None:
        reporter.note(note)
    deployed = None
    if options.deploy_best and tflite is not None:
        from ..pipeline import DeployOptions, deploy

        deployed = deploy(tflite, DeployOptions(board=options.board, board_files=options.board_files, data=str(data),
                                                eval_limit=options.eval_limit, out=str(out_dir / "deploy"),
                                                port=None if options.port in (None, "sim") else options.port,
                                                force=options.force), reporter)
    counts = outputs.counts(records)
    summary = {"tinyflow_version": __version__, "created": datetime.now(UTC).isoformat(timespec="seconds"),
               "study": options.study, "storage": shown_url(options.storage or ""), "board": s.identity["board"],
               "space": s.space.name, "knobs": [k.describe() for k in s.space.knobs], "limits": s.limits.to_json(),
               "data": str(data), "input_shape": list(s.input_shape), "classes": s.num_classes, "counts": counts,
               "best": best, "note": note, "sampler": options.sampler, "pruner": options.pruner,
               "reject_before_training": options.reject_before_training,
               "latency_objective": "measured on the board" if options.port not in (None, "sim") else
               "simulated board (host timings)" if options.port == "sim" else "the plan's estimate"}
    outputs.write_json(out_dir / "trials.json", records)
    outputs.write_json(out_dir / "pareto.json", front)
    outputs.write_json(out_dir / "search.json", summary)
    best_report = deployed.report if deployed is not None else outputs.summary_report(
        tflite.parent if tflite is not None else None)
    html = write_report(out_dir / "report.html", summary, records, front, best_report, s.board,
                        deployed.out_dir if deployed is not None else None)
    return SearchResult(out_dir, options.study, shown_url(options.storage or ""), tuple(records), tuple(front), best,
                        tflite, keras, html, counts, len([r for r in records if r["number"] not in before]), note,
                        deployed)
