"""``tinyflow deploy``: the whole pipeline for a board."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from . import Command
from .options import (
    bench_runs,
    board_options,
    kernel_options,
    optimize_args,
    optimize_options,
    positive_int,
    psram_choice,
    psram_options,
    rewrite_options,
)


class DeployPort(argparse.Action):
    """``--port``: deploy flashes the board, so a URL (a board on another machine) is refused while parsing,
    before minutes of building, in one line like every other error (argparse's own error would print the
    whole usage first), with how to flash it and measure it instead."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        from ..device import is_url, remote_flash_refusal
        from ..errors import InputError

        if is_url(values):
            try:
                refusal = remote_flash_refusal(values)
            except InputError as malformed:
                refusal = malformed
            parser.exit(refusal.exit_code, f"tinyflow: error: {refusal}\n")
        setattr(namespace, self.dest, values)


def cmd_deploy(a: argparse.Namespace) -> int:
    from rich.markup import escape

    from ..pipeline import DeployOptions, deploy
    from ..report import RichReporter, out_console, summary_rows, table

    model = a.model
    if model is None:
        from ..examples import bundled_digits

        model, data = bundled_digits()
        a.data = a.data or str(data)
    options = DeployOptions(board=a.board, board_files=tuple(a.board_file or ()), data=a.data,
                            optimize=optimize_options(a), calibration_samples=a.calibration_samples,
                            eval_limit=a.limit, psram=psram_choice(a), port=a.port, runs=a.runs,
                            kernels=a.kernels, kernel_library_version=a.kernel_library_version,
                            offline_plan=not a.no_offline_plan, rewrite=not a.no_rewrite,
                            max_latency_increase=a.max_latency_increase, out=a.out, force=a.force)
    with RichReporter() as reporter:
        result = deploy(model, options, reporter)
    # Names come from the user's files and board: shown as text, never read as rich markup.
    out_console.print(table(f"tinyflow deploy: {escape(Path(model).name)}", ["", ""],
                            [[escape(c) for c in r] for r in summary_rows(result.report)]))
    for note in result.report["memory"]["notes"]:
        out_console.print(f"[dim]note:[/dim] {note}")
    for w in result.measurement.version_warnings if result.measurement is not None else ():
        out_console.print(f"[yellow]warning:[/yellow] {w}")
    if result.measurement is not None and result.measurement.kind == "simulated":
        out_console.print("[yellow]no board was attached: 'device' figures come from tinyflow's SIMULATED board "
                          "(host timings); pass --port to measure a real one[/yellow]")
    fw = result.report.get("firmware") or {}
    for kind, rel in (("PlatformIO project", fw.get("platformio")), ("Arduino sketch", fw.get("arduino"))):
        if rel:
            out_console.print(f"{kind}: {result.out_dir / rel}")
    out_console.print(f"report: {result.out_dir / 'report.html'}")
    return 0


def register(command: Command) -> None:
    p = command("deploy", cmd_deploy, "run the whole pipeline for a board (no model: the bundled digits example)")
    p.add_argument("model", nargs="?", help=".keras, .h5, SavedModel directory or .tflite")
    board_options(p)
    p.add_argument("--data", metavar="DATA.npz", help="x_train, y_train, x_test, y_test")
    p.add_argument("--limit", type=positive_int, metavar="N", help="evaluate on the first N test samples")
    psram_options(p)
    kernel_options(p)
    p.add_argument("--port", action=DeployPort,
                   help="flash and measure the board on this serial port (auto: find it by USB id); without it, "
                        "measure on the simulated board. A board on another machine is flashed by you, then "
                        "measured with `tinyflow measure --port rfc2217://HOST:PORT`")
    p.add_argument("--runs", type=bench_runs, default=50, help="timed runs for the latency (1 to 1000, default 50)")
    p.add_argument("--no-offline-plan", action="store_true",
                   help="keep TFLM's own memory plan (by default an offline plan is written when it is smaller)")
    rewrite_options(p)
    p.add_argument("--out", metavar="DIR", help="output directory (default build/<model>)")
    p.add_argument("--force", action="store_true", help="replace an output directory tinyflow did not write")
    optimize_args(p)
