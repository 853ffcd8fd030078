"""``tinyflow flash``, ``measure`` and ``simulate``: the device stage."""

from __future__ import annotations

import argparse
import json
from typing import Any

from . import Command
from .options import bench_runs, board_options, positive_int, warmup_runs


def print_measurement(m: Any) -> None:
    from ..report import err_console, out_console, table

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
    if j["device_versions"]:
        rows.append(["built with", ", ".join(f"{k} {v}" for k, v in j["device_versions"].items())])
    if j["resets"] or j["retries"]:
        rows.append(["link", f"{j['resets']} resets, {j['retries']} retried requests (nothing counted twice)"])
    out_console.print(table("tinyflow measure", ["", ""], rows))
    for w in m.version_warnings:
        err_console.print(f"[yellow]warning:[/yellow] {w}")
    if m.profile:
        prow = [[str(p.index), p.op, f"{p.macs:,}", f"{p.us:,.1f}",
                 "–" if p.macs_per_cycle is None else f"{p.macs_per_cycle:.2f}"] for p in m.profile]
        out_console.print(table("per-op time on the device", ["#", "op", "MACs", "µs", "MACs/cycle"], prow, left=2))
    elif j["profile_note"]:
        out_console.print(f"[dim]per-op profile: {j['profile_note']}[/dim]")
    if m.per_layer is not None:
        lrow = [[str(d.index), d.op, "size differs" if d.max_lsb_diff is None else str(d.max_lsb_diff),
                 f"{100 * d.equal_share:.2f} %"] for d in m.per_layer.ops]
        n = m.per_layer.inputs
        out_console.print(table(f"every op's output against the host TFLM ({n} input{'s' if n != 1 else ''}, "
                                f"{m.per_layer.source})", ["#", "op", "max |diff| LSB", "equal"], lrow, left=2))
        first = m.per_layer.first_divergent_op
        out_console.print("no op's output differs from the host TFLM's" if first is None else
                          f"[red]first divergent op: #{first.index} {first.op}[/red] (every later op sees its "
                          f"output)")


def cmd_measure(a: argparse.Namespace) -> int:
    from ..boards import find_board
    from ..device import measure_on
    from ..graph import read_graph, read_tflite
    from ..model import check_matches_graph, load_dataset
    from ..report import RichReporter, err_console

    tflite = read_tflite(a.model)
    graph = read_graph(tflite, a.model)
    board = find_board(a.board, tuple(a.board_file or ()))
    data = load_dataset(a.data, need_train=False) if a.data else None
    if data is not None:
        check_matches_graph(data, graph)
    port = None if a.port in (None, "sim") else a.port
    if port is None:
        err_console.print("[yellow]no --port: measuring on the SIMULATED board (host timings)[/yellow]")
    with RichReporter() as reporter:
        m = measure_on(port, a.model, graph, tflite, board, data, a.runs, a.warmup, a.limit, None,
                       reporter.progress, (lambda line: reporter.note(f"device: {line}")) if a.verbose else None,
                       a.timeout, a.per_layer_inputs if a.per_layer else 0)
    if a.json:
        print(json.dumps(m.to_json(), indent=2))
    else:
        print_measurement(m)
    return 0


def cmd_flash(a: argparse.Namespace) -> int:
    from ..boards import find_board
    from ..device import find_port, flash
    from ..report import out_console

    board = find_board(a.board, tuple(a.board_file or ()))
    port = find_port(board) if a.port == "auto" else a.port
    result = flash(a.target, port, board, a.timeout)
    h = result.hello
    out_console.print(f"flashed with {result.tool} on {port}; the board answers: model {h.model_sha256[:12]}…, "
                      f"arena {h.arena_used_bytes:,} of {h.arena_bytes:,} bytes used, self-test "
                      f"{h.self_test_passed}/{h.self_test_total}")
    return 0


def cmd_simulate(a: argparse.Namespace) -> int:
    from ..device import serve
    from ..graph import read_tflite

    read_tflite(a.model)  # a bad file is a one-line error here, not a crash in the server
    serve(a.model, a.arena, use_c=not a.python_server, fault_op=a.fault_op)
    return 0


def register(command: Command) -> None:
    p = command("flash", cmd_flash, "build and upload the firmware (PlatformIO project or .bin image), then "
                                    "wait for the board's HELLO")
    p.add_argument("target", help="the folder `tinyflow generate`/`deploy` wrote, or a merged .bin image")
    p.add_argument("--port", required=True, help="serial port path, or auto (find the board by its USB id); a board "
                                                 "on another machine (rfc2217:// or socket:// URL) is flashed with "
                                                 "esptool over RFC 2217, which the error names")
    board_options(p, "board id or alias")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds to wait for the HELLO after flashing")


    p = command("measure", cmd_measure, "latency, per-op time and accuracy on the device (no --port: the "
                                        "simulated board)")
    p.add_argument("model", help="the .tflite the device runs")
    p.add_argument("--port", help="serial port path, auto (find by USB id), sim (default), or a board on another "
                                  "machine: rfc2217://HOST:PORT (esp_rfc2217_server, ser2net telnet) or "
                                  "socket://HOST:PORT (raw TCP)")
    board_options(p, "board id or alias (for auto and the baud rate)")
    p.add_argument("--data", metavar="DATA.npz", help="stream x_test through the device and compare")
    p.add_argument("--runs", type=bench_runs, default=50, help="timed runs for the latency (1 to 1000, default 50)")
    p.add_argument("--warmup", type=warmup_runs, default=5, help="untimed runs first (default 5)")
    p.add_argument("--limit", type=positive_int, metavar="N", help="only the first N test samples")
    p.add_argument("--timeout", type=float, default=2.0,
                   help="the longest any one wait for an answer lasts, in seconds (retries come sooner: after a "
                        "NAK, a damaged answer, or a timeout learned from recent round trips)")
    p.add_argument("--per-layer", action="store_true",
                   help="compare every op's output on the device with the host TFLM's and name the first op that "
                        "differs (needs a firmware built with TINYFLOW_KEEP_TENSORS; the simulated board has it)")
    p.add_argument("--per-layer-inputs", type=positive_int, default=3, metavar="N",
                   help="inputs for --per-layer (default 3): x_test's first with --data, else seeded random")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("-v", "--verbose", action="store_true", help="show the device's log lines")


    p = command("simulate", cmd_simulate, "serve tinyflow's protocol for a model on a pseudo-terminal (the "
                                          "simulated board); prints the port, runs until stopped")
    p.add_argument("model", help="a .tflite file")
    p.add_argument("--arena-size", "--arena", dest="arena", type=positive_int, metavar="N",
                   help="arena bytes (default: the planned minimum); too small, the board fails its set-up as a board "
                        "would and says why in its HELLO")
    p.add_argument("--python-server", action="store_true", help="use the Python protocol server, not the C one")
    p.add_argument("--fault-op", type=int, metavar="K", help="simulate a faulty board: op K's output (and every "
                                                              "later op's) is off by 1 LSB in some elements")
