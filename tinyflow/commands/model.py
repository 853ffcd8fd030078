"""``tinyflow convert``, ``optimize`` and ``example``: the model stages on their own."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from . import Command
from .options import optimize_args, optimize_options, positive_int


def model_summary_rows(report: dict[str, Any]) -> list[list[str]]:
    """Model, optimization and host-accuracy rows of the summary table."""
    from ..report import kib, optimize_line, pct

    m, o, acc = report["model"], report["optimize"], report.get("accuracy") or {}
    rows = [
        ["model", f"{Path(m['source']).name} ({m['format']})"],
        ["size", f"{kib(m['float_params_bytes'])} float params → {kib(m['tflite_bytes'])} int8 .tflite"],
        ["ops", ", ".join(m["ops"])],
        ["MACs", f"{m['macs']:,}"],
        ["optimization", optimize_line(o)],
        ["weight sparsity", pct(o["sparsity"]["overall"])],
    ]
    if acc:
        if acc["task"] == "classification":
            rows.append(["accuracy float (Keras)", pct(acc["float"])])
            if acc["float_optimized"] is not None:
                rows.append(["accuracy float, pruned", pct(acc["float_optimized"])])
            rows.append(["accuracy int8 (host TFLM)", pct(acc["int8"])])
        elif acc["task"] == "regression":
            rows.append(["MSE float / int8", f"{acc['float_mse']:.6g} / {acc['int8_mse']:.6g}"])
        if acc["agreement"] is not None:
            rows.append(["int8 agrees with float (top-1)", pct(acc["agreement"])])
        rows.append(["test samples", str(acc["samples"])])
    return rows


def cmd_optimize(a: argparse.Namespace) -> int:
    from ..pipeline import optimize_model
    from ..report import RichReporter, out_console, table

    with RichReporter() as reporter:
        path, report, _ = optimize_model(a.model, a.data, optimize_options(a), a.out, a.force,
                                         a.calibration_samples, reporter)
    out_console.print(table("tinyflow optimize", ["", ""], model_summary_rows(report)))
    out_console.print(f"wrote {path}")
    return 0


def cmd_convert(a: argparse.Namespace) -> int:
    # Post-training quantization only: the optimize stage with nothing to fine-tune.
    a.prune, a.structured_2_4, a.qat, a.epochs = None, False, False, None
    return cmd_optimize(a)


def cmd_example(a: argparse.Namespace) -> int:
    from ..examples import EXAMPLES
    from ..report import RichReporter, out_console

    with RichReporter() as reporter, reporter.stage(f"train the {a.name} example"):
        model, data = EXAMPLES[a.name](a.out or f"examples/{a.name}")
    out_console.print(f"model: {model}\ndata:  {data}\nnext:  tinyflow deploy {model} --data {data} --board esp32s3")
    return 0


def register(command: Command) -> None:
    p = command("convert", cmd_convert, "convert a Keras model to a full-integer int8 .tflite (post-training "
                                        "quantization) and evaluate it on the host TFLM")
    p.add_argument("model", help=".keras, .h5 or SavedModel directory")
    p.add_argument("--data", required=True, metavar="DATA.npz", help="x_train calibrates; x_test, y_test evaluate")
    p.add_argument("--out", metavar="DIR", help="output directory (default build/<model>)")
    p.add_argument("--force", action="store_true", help="replace an output directory tinyflow did not write")
    p.add_argument("--calibration-samples", type=positive_int, default=200,
                   help="training samples used to calibrate int8 ranges (default 200)")


    p = command("optimize", cmd_optimize, "prune and/or quantize a Keras model to an int8 .tflite, and evaluate it")
    p.add_argument("model", help=".keras, .h5 or SavedModel directory")
    p.add_argument("--data", required=True, metavar="DATA.npz", help="x_train, y_train, x_test, y_test")
    p.add_argument("--out", metavar="DIR", help="output directory (default build/<model>)")
    p.add_argument("--force", action="store_true", help="replace an output directory tinyflow did not write")
    optimize_args(p)


    p = command("example", cmd_example, "train a bundled example (data from scikit-learn or generated; nothing is "
                                        "downloaded) and save its .keras model and DATA.npz")
    p.add_argument("name", choices=["digits", "signals", "anomaly"])
    p.add_argument("--out", metavar="DIR", help="where to save (default examples/NAME)")
