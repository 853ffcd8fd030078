"""``tinyflow search``: the most accurate model of a family that fits the board (the search stage)."""

from __future__ import annotations

import argparse

from . import Command
from .options import board_options, fraction, optimize_args, optimize_options, positive_int


def _positive_float(text: str) -> float:
    value = fraction(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} must be positive")
    return value


def cmd_search(a: argparse.Namespace) -> int:
    from rich.markup import escape

    from ..report import RichReporter, out_console, table
    from ..search import SearchOptions, search

    options = SearchOptions(board=a.board, board_files=tuple(a.board_file or ()), space=a.space, trials=a.trials,
                            out=a.out, max_arena=a.max_arena, max_flash=a.max_flash, max_latency_ms=a.max_latency_ms,
                            optimize=optimize_options(a), storage=a.storage, study=a.study, workers=a.workers,
                            timeout_min=a.timeout_min, epochs=a.train_epochs, patience=a.patience,
                            calibration_samples=a.calibration_samples, eval_limit=a.limit, sampler=a.sampler,
                            pruner=a.pruner, startup_trials=a.startup_trials, seed=a.seed,
                            reject_before_training=not a.no_rejection, port=a.port, deploy_best=a.deploy_best,
                            heartbeat_s=a.heartbeat, force=a.force)
    with RichReporter() as reporter:
        result = search(a.data, options, reporter)
    c = result.counts
    rows = [["study", f"{escape(result.study)} ({escape(result.storage)})"],
            ["trials", f"{c['trials']} in the study ({result.new_trials} now): {c['feasible']} feasible, "
                       f"{c['rejected_before_training']} rejected before training, {c['pruned']} pruned, "
                       f"{c['failed']} failed" + (f", {c['running']} running" if c["running"] else "")],
            ["Pareto front", ", ".join(f"#{r['number']} {100 * r['accuracy']:.1f} %" for r in result.pareto) or "–"]]
    b = result.best
    if b is not None:
        lat = f"{b['latency_us'] / 1000:.3f} ms ({b['latency_source']})" if b["latency_us"] is not None else "–"
        rows.append(["best", f"trial {b['number']}: int8 accuracy {100 * b['accuracy']:.2f} %, arena "
                             f"{b['arena_bytes']:,} B, flash {b['flash_bytes']:,} B, latency {lat}"])
        rows.append(["params", escape(str(b["params"]))])
    out_console.print(table("tinyflow search", ["", ""], rows))
    if result.note:
        out_console.print(f"[yellow]note:[/yellow] {escape(result.note)}")
    if result.best_tflite is not None:
        out_console.print(f"best model: {result.best_tflite}")
    if result.deploy is not None:
        out_console.print(f"deployed: {result.deploy.out_dir / 'report.html'}")
    out_console.print(f"report: {result.report_html}")
    return 0 if b is not None else 1


def register(command: Command) -> None:
    p = command("search", cmd_search, "search a model family for the most accurate models that fit the board "
                                      "(exit 1 when none is feasible yet)")
    board_options(p)
    p.add_argument("--data", required=True, metavar="DATA.npz", help="x_train, y_train, x_test, y_test (class ids)")
    p.add_argument("--space", default="ds_cnn",
                   help="ds_cnn (KWS, 2-D features), mobilenet (images), conv1d (time series), dense, or your own "
                        "FILE.py:FUNCTION taking (trial, input_shape, num_classes) and returning a Keras model")
    p.add_argument("--trials", type=positive_int, default=20, help="trials to run now (a resumed study gets this "
                                                                   "many more; default 20)")
    p.add_argument("--out", metavar="DIR", help="search folder (default build/search): study.db, trials.json, "
                                                "pareto.json, best/, report.html")
    g = p.add_argument_group("budget (on top of the board's SRAM and flash)")
    g.add_argument("--max-arena", type=positive_int, metavar="BYTES", help="the smallest arena that builds")
    g.add_argument("--max-flash", type=positive_int, metavar="BYTES", help="model + firmware estimate")
    g.add_argument("--max-latency-ms", type=_positive_float, metavar="X", help="estimated (or measured) latency")
    g = p.add_argument_group("engine")
    g.add_argument("--storage", metavar="URL", help="Optuna storage shared by the workers, e.g. "
                                                    "postgresql://user:pw@host/db (default: sqlite in DIR)")
    g.add_argument("--study", default="tinyflow-search", help="study name in the storage (default tinyflow-search)")
    g.add_argument("--workers", type=positive_int, default=1, help="local worker processes (default 1)")
    g.add_argument("--timeout-min", type=_positive_float, metavar="M", help="stop starting trials after M minutes")
    g.add_argument("--sampler", choices=("tpe", "nsga2", "random"), default="tpe",
                   help="Optuna sampler (tpe and nsga2 learn from the budget constraints)")
    g.add_argument("--pruner", choices=("median", "none"), default="median",
                   help="stop a training whose validation accuracy trails the median of earlier trials")
    g.add_argument("--startup-trials", type=int, default=5, metavar="N", help="random trials first (default 5)")
    g.add_argument("--seed", type=int, default=0, help="sampler seed (default 0)")
    g.add_argument("--heartbeat", type=_positive_float, default=30.0, metavar="S",
                   help="workers' heartbeat: a dead worker's trial turns FAIL about 3xS seconds later (default 30)")
    g.add_argument("--no-rejection", action="store_true",
                   help="train every candidate, judging the budget only after training (to measure what the "
                        "rejection saves)")
    g = p.add_argument_group("training")
    g.add_argument("--train-epochs", type=positive_int, default=10, metavar="N",
                   help="epochs per candidate at most (early stopping; default 10)")
    g.add_argument("--patience", type=int, default=2, help="early-stopping patience in epochs (default 2)")
    g.add_argument("--limit", type=positive_int, metavar="N", help="evaluate on the first N test samples")
    p.add_argument("--port", help="measure each feasible trained candidate's latency on the board on this port "
                                  "(flashing it), or sim for the simulated board (labelled simulated)")
    p.add_argument("--deploy-best", action="store_true", help="run `tinyflow deploy` on the chosen model into "
                                                              "DIR/deploy")
    p.add_argument("--force", action="store_true", help="write into a folder holding files a search did not write")
    optimize_args(p)
