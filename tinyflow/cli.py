"""The ``tinyflow`` command: parse arguments, call the library, print. The one error boundary lives here."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import __version__
from .errors import TinyflowError

Handler = Callable[[argparse.Namespace], int]


def _fraction(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _optimize_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("optimization")
    g.add_argument("--prune", type=_fraction, metavar="S", help="magnitude-prune kernels to sparsity S in (0, 1)")
    g.add_argument("--structured-2-4", action="store_true", help="2:4 structured sparsity (50%%)")
    g.add_argument("--qat", action="store_true", help="quantization-aware training (PQAT when pruning)")
    g.add_argument("--epochs", type=_positive_int, help="fine-tuning epochs (default: 10 pruning, 3-5 QAT)")
    g.add_argument("--calibration-samples", type=_positive_int, default=200,
                   help="training samples used to calibrate int8 ranges (default 200)")


def _optimize_options(a: argparse.Namespace) -> Any:
    from .optimize import OptimizeOptions

    return OptimizeOptions(prune=a.prune, structured_2_4=a.structured_2_4, qat=a.qat, epochs=a.epochs)


def _model_summary_rows(report: dict[str, Any]) -> list[list[str]]:
    """Model, optimization and host-accuracy rows of the summary table."""
    from .display import kib, pct

    m, o, acc = report["model"], report["optimize"], report.get("accuracy") or {}
    rows = [
        ["model", f"{Path(m['source']).name} ({m['format']})"],
        ["size", f"{kib(m['float_params_bytes'])} float params → {kib(m['tflite_bytes'])} int8 .tflite"],
        ["ops", ", ".join(m["ops"])],
        ["MACs", f"{m['macs']:,}"],
        ["optimization", f"{o['method']}: {o['quantization']}"],
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


def cmd_boards(a: argparse.Namespace) -> int:
    from .boards import all_boards
    from .display import out_console, size, table

    boards = all_boards(tuple(a.board_file or ()))
    if a.json:
        print(json.dumps([{"id": b.id, "aliases": list(b.aliases), "name": b.name, "mcu": b.mcu,
                           "cpu_mhz": b.cpu_mhz, "arena_sram_bytes": b.arena_sram_bytes,
                           "psram_bytes": b.psram_bytes, "flash_bytes": b.flash_bytes,
                           "max_app_bytes": b.max_app_bytes, "kernel_library": b.kernel_library,
                           "simulated": b.simulated, "source": str(b.source)} for b in boards], indent=2))
        return 0
    rows = [[b.id, " ".join(b.aliases), b.mcu, str(b.cpu_mhz or "host"), size(b.arena_sram_bytes),
             size(b.psram_bytes) if b.psram_bytes else "–", size(b.max_app_bytes), b.kernel_library]
            for b in boards]
    out_console.print(table("boards", ["id", "aliases", "MCU", "MHz", "arena SRAM", "PSRAM", "app flash",
                                       "kernels"], rows, left=3))
    return 0


def cmd_optimize(a: argparse.Namespace) -> int:
    from .display import RichReporter, out_console, table
    from .pipeline import optimize_model

    with RichReporter() as reporter:
        path, report, _ = optimize_model(a.model, a.data, _optimize_options(a), a.out, a.force,
                                         a.calibration_samples, reporter)
    out_console.print(table("tinyflow optimize", ["", ""], _model_summary_rows(report)))
    out_console.print(f"wrote {path}")
    return 0


def cmd_convert(a: argparse.Namespace) -> int:
    # Post-training quantization only: the optimize stage with nothing to fine-tune.
    a.prune, a.structured_2_4, a.qat, a.epochs = None, False, False, None
    return cmd_optimize(a)


def cmd_example(a: argparse.Namespace) -> int:
    from .display import RichReporter, out_console
    from .examples import EXAMPLES

    with RichReporter() as reporter, reporter.stage(f"train the {a.name} example"):
        model, data = EXAMPLES[a.name](a.out or f"examples/{a.name}")
    out_console.print(f"model: {model}\ndata:  {data}\nnext:  tinyflow deploy {model} --data {data} --board esp32s3")
    return 0


def cmd_deploy(a: argparse.Namespace) -> int:
    from .display import RichReporter, out_console, table
    from .errors import DoesNotFitError
    from .pipeline import DeployOptions, deploy
    from .report import summary_rows

    model = a.model
    if model is None:
        from .examples import bundled_digits

        model, data = bundled_digits()
        a.data = a.data or str(data)
    options = DeployOptions(board=a.board, board_files=tuple(a.board_file or ()), data=a.data,
                            optimize=_optimize_options(a), calibration_samples=a.calibration_samples,
                            eval_limit=a.limit, psram=_psram_choice(a), port=a.port, runs=a.runs,
                            offline_plan=not a.no_offline_plan, out=a.out, force=a.force)
    try:
        with RichReporter() as reporter:
            result = deploy(model, options, reporter)
    except DoesNotFitError:
        out_console.print("[red]does not fit:[/red] the output folder's report.html says why and what to do")
        raise
    out_console.print(table(f"tinyflow deploy: {Path(model).name}", ["", ""], [list(r) for r in
                                                                             summary_rows(result.report)]))
    for note in result.report["memory"]["notes"]:
        out_console.print(f"[dim]note:[/dim] {note}")
    if result.measurement is not None and result.measurement.kind == "simulated":
        out_console.print("[yellow]no board was attached: 'device' figures come from tinyflow's SIMULATED board "
                          "(host timings); pass --port to measure a real one[/yellow]")
    fw = result.report.get("firmware") or {}
    for kind, rel in (("PlatformIO project", fw.get("platformio")), ("Arduino sketch", fw.get("arduino"))):
        if rel:
            out_console.print(f"{kind}: {result.out_dir / rel}")
    out_console.print(f"report: {result.out_dir / 'report.html'}")
    return 0


def _shape(t: Any) -> str:
    return "x".join(map(str, t.shape[1:] if len(t.shape) > 1 else t.shape)) or "scalar"


def cmd_inspect(a: argparse.Namespace) -> int:
    from .display import out_console, size, table
    from .graph import read_graph_file

    g = read_graph_file(a.model)
    sg = g.main
    if a.json:
        print(json.dumps(_graph_json(g), indent=2))
        return 0
    live = g.live_bytes()
    rows = []
    for op in sg.operators:
        ins = [sg.tensors[i] for i in op.inputs if i >= 0 and not sg.tensors[i].is_constant]
        outs = [sg.tensors[i] for i in op.outputs]
        rows.append([str(op.index), op.name if op.supported_by_tflm else f"[red]{op.name} (no TFLM kernel)[/red]",
                     " + ".join(_shape(t) for t in ins) + " → " + " + ".join(_shape(t) for t in outs),
                     f"{op.macs:,}", size(op.param_bytes), size(live[op.index])])
    title = (f"{Path(a.model).name}: {len(sg.operators)} ops, {g.total_macs:,} MACs, {size(g.param_bytes)} of "
             f"weights, {size(g.size_bytes)} file")
    out_console.print(table(title, ["#", "op", "activations", "MACs", "params", "live"], rows, left=3))
    if g.unsupported_ops:
        names = ", ".join(f"{name} (op {i})" for i, name in g.unsupported_ops)
        out_console.print(f"[red]TFLM has no kernel for: {names}[/red] — on the device this is "
                          "\"Didn't find op for builtin opcode\"")
        return 1
    return 0


def _graph_json(g: Any) -> dict[str, Any]:
    sg = g.main
    live = g.live_bytes()
    return {
        "file_bytes": g.size_bytes, "sha256": g.sha256, "macs": g.total_macs, "param_bytes": g.param_bytes,
        "quantized": g.is_quantized, "subgraphs": len(g.subgraphs),
        "unsupported_ops": [{"index": i, "op": n} for i, n in g.unsupported_ops],
        "ops": [{"index": op.index, "op": op.name, "version": op.version, "macs": op.macs,
                 "param_bytes": op.param_bytes, "input_bytes": op.input_bytes, "output_bytes": op.output_bytes,
                 "live_bytes": live[op.index], "inputs": list(op.inputs), "outputs": list(op.outputs)}
                for op in sg.operators],
        "tensors": [{"index": t.index, "name": t.name, "dtype": t.dtype.lower(), "shape": list(t.shape),
                     "bytes": t.bytes, "constant": t.is_constant, "variable": t.is_variable,
                     "first_use": t.first_use, "last_use": t.last_use,
                     "scales": list(t.quantization.scales) if t.quantization else None,
                     "zero_points": list(t.quantization.zero_points) if t.quantization else None,
                     "quantized_dimension": t.quantization.axis if t.quantization else None}
                    for t in sg.tensors],
    }


def _psram_choice(a: argparse.Namespace) -> bool | None:
    return True if a.psram else (False if a.no_psram else None)


def print_board_plan(bp: Any) -> None:
    """The human view of a BoardPlan (shared by plan and deploy)."""
    from .display import out_console, size, table

    j = bp.to_json()
    rows = [["board", f"{bp.board.name} ({bp.board.id})"], ["kernels", bp.kernels]]
    if j["arena"]:
        a, f = j["arena"], j["flash"]
        rows += [
            ["arena (smallest that builds)", f"{a['min_bytes']:,} B: planned head {a['head_bytes']:,} B, persistent "
                                             f"tail {a['tail_bytes']:,} B; set by {a['binding']}"],
        ]
        if a["offline_plan"]:
            o = a["offline_plan"]
            rows.append(["offline memory plan",
                         f"head {o['head_bytes']:,} B instead of TFLM's {o['greedy_head_bytes']:,} B (arena "
                         f"{a['greedy_min_bytes']:,} B → {a['min_bytes']:,} B; {o['strategy']}"
                         f"{'; optimal' if o['optimal'] else ''})"])
        rows += [
            ["arena in firmware", f"{a['firmware_bytes']:,} B in {(a['region'] or 'nowhere').upper()} "
                                  f"(limit {size(a['limit_bytes'])})"],
            ["activations at best", f"{a['lower_bound_bytes']:,} B live at the peak (greedy plan: "
                                    f"{a['head_bytes']:,} B)"],
            ["flash", f"{size(f['total_bytes'])} = model {size(f['model_bytes'])} + firmware "
                      f"~{size(f['firmware_estimate_bytes'])} of {size(f['limit_bytes'])} "
                      f"({f['partition_table'] or 'no partition table fits'})"],
        ]
        if j["latency_estimate_us"] is not None:
            rows.append(["latency (estimate)",
                         f"{j['latency_estimate_us'] / 1000:,.2f} ms — {j['latency_estimate_basis']}"])
    rows.append(["fits", "[green]yes[/green]" if bp.fits else "[red]no[/red]"])
    out_console.print(table("tinyflow plan", ["", ""], rows))
    for h in bp.hazards:
        out_console.print(f"[red]hazard:[/red] {h}")
    for i, n in bp.unsupported_ops:
        out_console.print(f"[red]no TFLM kernel:[/red] op {i} ({n}); on the device: \"Didn't find op for builtin "
                          "opcode\"")
    for p in j["problems"]:
        out_console.print(f"[red]does not fit:[/red] {p}")
    for r in j["remedies"]:
        out_console.print(f"[yellow]to do:[/yellow] {r}")
    for n in j["notes"]:
        out_console.print(f"[dim]note:[/dim] {n}")


def cmd_plan(a: argparse.Namespace) -> int:
    from .assess import assess
    from .boards import find_board
    from .errors import OutputExistsError
    from .graph import read_graph_file
    from .keras_io import read_tflite
    from .outdir import write_bytes

    board = find_board(a.board, tuple(a.board_file or ()))
    tflite = read_tflite(a.model)
    bp = assess(read_graph_file(a.model), board, _psram_choice(a), tuple(a.board_file or ()), tflite, a.optimize)
    if a.write:
        out = Path(a.write)
        if out.exists() and not a.force:
            raise OutputExistsError(f"{out}: exists; pass --force to replace it")
        write_bytes(out, bp.tflite or tflite)
    if a.json:
        print(json.dumps(bp.to_json(), indent=2))
    else:
        print_board_plan(bp)
    return 0 if bp.fits else 1


def _read_labels(path: str | None) -> list[str] | None:
    from .errors import InputError

    if path is None:
        return None
    try:
        return [line.rstrip("\r\n") for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read the labels file ({e}); give one label per line") from None


def cmd_generate(a: argparse.Namespace) -> int:
    from .assess import assess
    from .boards import find_board
    from .dataset import load_dataset
    from .display import out_console
    from .errors import DoesNotFitError
    from .graph import read_graph_file
    from .keras_io import read_tflite
    from .project import generate, self_test_vectors

    tflite = read_tflite(a.model)
    graph = read_graph_file(a.model)
    board = find_board(a.board, tuple(a.board_file or ()))
    labels = _read_labels(a.labels)
    bp = assess(graph, board, _psram_choice(a), tuple(a.board_file or ()))
    if not bp.fits:
        print_board_plan(bp)
        raise DoesNotFitError(f"{a.model} does not fit {board.id}; nothing generated")
    x = load_dataset(a.data).x_test if a.data else None
    st = self_test_vectors(tflite, graph, a.self_test, x)
    project = generate(graph, tflite, bp, a.out, Path(a.model).stem, labels, st, a.force)
    for kind, path in (("PlatformIO project", project.platformio), ("Arduino sketch", project.arduino)):
        if path is not None:
            out_console.print(f"{kind}: {path}")
    return 0


def print_measurement(m: Any) -> None:
    from .display import out_console, table

    j = m.to_json()
    lat = j["latency_us"]
    kind = "[yellow]SIMULATED[/yellow] — host timings on the tflite-micro interpreter, not a device" \
        if m.kind == "simulated" else "[green]hardware[/green] — timed on the device"
    rows = [["device", f"{j['board_id']} ({kind})"], ["runtime", j["runtime"]],
            ["latency µs (min/median/p90/max)", f"{lat['min']:.0f} / {lat['median']:.0f} / {lat['p90']:.0f} / "
                                                f"{lat['max']:.0f} over {j['runs']} runs (spread {lat['spread']:.0f})"]]
    if j["cycles"]:
        c = j["cycles"]
        rows.append(["cycles (min/median/p90/max)", f"{c['min']:,.0f} / {c['median']:,.0f} / {c['p90']:,.0f} / "
                                                   f"{c['max']:,.0f}"])
    if j["samples"]:
        rows += [["samples", f"{j['samples']} ({j['samples_per_s']} samples/s)"],
                 ["bit-exact with the host TFLM", f"{100 * j['bit_exact_share']:.2f} % (max difference "
                                                  f"{j['max_lsb_diff']} LSB)"]]
        if j["accuracy"] is not None:
            rows.append(["accuracy on the device", f"{100 * j['accuracy']:.2f} %"])
    rows.append(["self-test at boot", f"{j['self_test']['passed']} of {j['self_test']['total']}"])
    if j["resets"] or j["retries"]:
        rows.append(["link", f"{j['resets']} resets, {j['retries']} retried requests (nothing counted twice)"])
    out_console.print(table("tinyflow measure", ["", ""], rows))
    if m.profile:
        prow = [[str(p.index), p.op, f"{p.macs:,}", f"{p.us:,.1f}",
                 "–" if p.macs_per_cycle is None else f"{p.macs_per_cycle:.2f}"] for p in m.profile]
        out_console.print(table("per-op time on the device", ["#", "op", "MACs", "µs", "MACs/cycle"], prow, left=2))
    elif j["profile_note"]:
        out_console.print(f"[dim]per-op profile: {j['profile_note']}[/dim]")


def cmd_measure(a: argparse.Namespace) -> int:
    from .boards import find_board
    from .dataset import load_dataset
    from .display import RichReporter, err_console
    from .graph import read_graph
    from .harness import measure_on
    from .keras_io import read_tflite

    tflite = read_tflite(a.model)
    graph = read_graph(tflite, a.model)
    board = find_board(a.board, tuple(a.board_file or ()))
    data = load_dataset(a.data) if a.data else None
    port = None if a.port in (None, "sim") else a.port
    if port is None:
        err_console.print("[yellow]no --port: measuring on the SIMULATED board (host timings)[/yellow]")
    with RichReporter() as reporter:
        m = measure_on(port, a.model, graph, tflite, board, data, a.runs, a.warmup, a.limit, None,
                       reporter.progress, (lambda line: reporter.note(f"device: {line}")) if a.verbose else None,
                       a.timeout)
    if a.json:
        print(json.dumps(m.to_json(), indent=2))
    else:
        print_measurement(m)
    return 0


def cmd_flash(a: argparse.Namespace) -> int:
    from .boards import find_board
    from .display import out_console
    from .flash import flash
    from .ports import find_port

    board = find_board(a.board, tuple(a.board_file or ()))
    port = find_port(board) if a.port == "auto" else a.port
    result = flash(a.target, port, board, a.timeout)
    h = result.hello
    out_console.print(f"flashed with {result.tool} on {port}; the board answers: model {h.model_sha256[:12]}…, "
                      f"arena {h.arena_used_bytes:,} of {h.arena_bytes:,} bytes used, self-test "
                      f"{h.self_test_passed}/{h.self_test_total}")
    return 0


def cmd_simulate(a: argparse.Namespace) -> int:
    from .keras_io import read_tflite
    from .simulator import serve

    read_tflite(a.model)  # a bad file is a one-line error here, not a crash in the server
    serve(a.model, a.arena, use_c=not a.python_server)
    return 0


def _board_options(p: argparse.ArgumentParser, help_text: str = "board id or alias (see `tinyflow boards`)") -> None:
    p.add_argument("--board", default="esp32s3", help=help_text)
    p.add_argument("--board-file", action="append", metavar="PATH", help="load an extra board file")


def _psram_options(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--psram", action="store_true", help="put the arena in PSRAM")
    g.add_argument("--no-psram", action="store_true", help="never put the arena in PSRAM")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tinyflow", description="Take a Keras model to a microcontroller and "
                                     "prove it works there.")
    parser.add_argument("--version", action="version", version=f"tinyflow {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        return p

    p = command("boards", cmd_boards, "list the boards tinyflow knows")
    p.add_argument("--board-file", action="append", metavar="PATH", help="also load this board file")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = command("inspect", cmd_inspect, "per-op table of a .tflite: shapes, MACs, weights, live activation bytes")
    p.add_argument("model", help="a .tflite file")
    p.add_argument("--json", action="store_true", help="print JSON (ops and tensors)")

    p = command("plan", cmd_plan, "the exact TFLM arena for a board, flash, hazards and a latency estimate "
                                  "(exit 1 when it does not fit)")
    p.add_argument("model", help="a .tflite file")
    _board_options(p)
    _psram_options(p)
    p.add_argument("--optimize", action="store_true",
                   help="search an offline memory plan that beats TFLM's greedy planner")
    p.add_argument("--write", metavar="OUT.tflite", help="write the model (with its offline plan, if found)")
    p.add_argument("--force", action="store_true", help="replace OUT.tflite if it exists")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = command("generate", cmd_generate, "write TFLM firmware for a board: a PlatformIO project and an "
                                          "Arduino sketch")
    p.add_argument("model", help="a .tflite file")
    _board_options(p)
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    _psram_options(p)
    p.add_argument("--self-test", type=int, default=0, metavar="N",
                   help="embed N test inputs and the host's outputs; the firmware checks them at boot")
    p.add_argument("--data", metavar="DATA.npz", help="take the self-test inputs from x_test")
    p.add_argument("--labels", metavar="FILE", help="class labels, one per line")
    p.add_argument("--force", action="store_true", help="replace an output directory tinyflow did not write")

    p = command("flash", cmd_flash, "build and upload the firmware (PlatformIO project or .bin image), then "
                                    "wait for the board's HELLO")
    p.add_argument("target", help="the folder `tinyflow generate`/`deploy` wrote, or a merged .bin image")
    p.add_argument("--port", required=True, help="serial port path, or auto (find the board by its USB id)")
    _board_options(p, "board id or alias")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds to wait for the HELLO after flashing")

    p = command("measure", cmd_measure, "latency, per-op time and accuracy on the device (no --port: the "
                                        "simulated board)")
    p.add_argument("model", help="the .tflite the device runs")
    p.add_argument("--port", help="serial port path, auto (find by USB id), or sim (default)")
    _board_options(p, "board id or alias (for auto and the baud rate)")
    p.add_argument("--data", metavar="DATA.npz", help="stream x_test through the device and compare")
    p.add_argument("--runs", type=_positive_int, default=50, help="timed runs for the latency (default 50)")
    p.add_argument("--warmup", type=int, default=5, help="untimed runs first (default 5)")
    p.add_argument("--limit", type=_positive_int, metavar="N", help="only the first N test samples")
    p.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for an answer before retrying")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("-v", "--verbose", action="store_true", help="show the device's log lines")

    p = command("simulate", cmd_simulate, "serve tinyflow's protocol for a model on a pseudo-terminal (the "
                                          "simulated board); prints the port, runs until stopped")
    p.add_argument("model", help="a .tflite file")
    p.add_argument("--arena", type=int, help="arena bytes (default: the planned minimum)")
    p.add_argument("--python-server", action="store_true", help="use the Python protocol server, not the C one")

    p = command("convert", cmd_convert, "convert a Keras model to a full-integer int8 .tflite (post-training "
                                        "quantization) and evaluate it on the host TFLM")
    p.add_argument("model", help=".keras, .h5 or SavedModel directory")
    p.add_argument("--data", required=True, metavar="DATA.npz", help="x_train calibrates; x_test, y_test evaluate")
    p.add_argument("--out", metavar="DIR", help="output directory (default build/<model>)")
    p.add_argument("--force", action="store_true", help="replace an output directory tinyflow did not write")
    p.add_argument("--calibration-samples", type=_positive_int, default=200,
                   help="training samples used to calibrate int8 ranges (default 200)")

    p = command("optimize", cmd_optimize, "prune and/or quantize a Keras model to an int8 .tflite, and evaluate it")
    p.add_argument("model", help=".keras, .h5 or SavedModel directory")
    p.add_argument("--data", required=True, metavar="DATA.npz", help="x_train, y_train, x_test, y_test")
    p.add_argument("--out", metavar="DIR", help="output directory (default build/<model>)")
    p.add_argument("--force", action="store_true", help="replace an output directory tinyflow did not write")
    _optimize_args(p)

    p = command("example", cmd_example, "train a bundled example (data from scikit-learn or generated; nothing is "
                                        "downloaded) and save its .keras model and DATA.npz")
    p.add_argument("name", choices=["digits", "signals", "anomaly"])
    p.add_argument("--out", metavar="DIR", help="where to save (default examples/NAME)")

    p = command("deploy", cmd_deploy, "run the whole pipeline for a board (no model: the bundled digits example)")
    p.add_argument("model", nargs="?", help=".keras, .h5, SavedModel directory or .tflite")
    _board_options(p)
    p.add_argument("--data", metavar="DATA.npz", help="x_train, y_train, x_test, y_test")
    p.add_argument("--limit", type=_positive_int, metavar="N", help="evaluate on the first N test samples")
    _psram_options(p)
    p.add_argument("--port", help="flash and measure the board on this serial port (auto: find it by USB id); "
                                  "without it, measure on the simulated board")
    p.add_argument("--runs", type=_positive_int, default=50, help="timed runs for the latency (default 50)")
    p.add_argument("--no-offline-plan", action="store_true",
                   help="keep TFLM's own memory plan (by default an offline plan is written when it is smaller)")
    p.add_argument("--out", metavar="DIR", help="output directory (default build/<model>)")
    p.add_argument("--force", action="store_true", help="replace an output directory tinyflow did not write")
    _optimize_args(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except TinyflowError as e:
        print(f"tinyflow: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("tinyflow: interrupted", file=sys.stderr)
        return 130
