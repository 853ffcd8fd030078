"""``tinyflow generate``: the firmware projects for a board (the firmware stage)."""

from __future__ import annotations

import argparse
import unicodedata
from pathlib import Path

from . import Command
from .options import board_options, kernel_choice, kernel_options, psram_choice, psram_options
from .plan import print_board_plan

MAX_LABELS_FILE_BYTES = 1024 * 1024


def _read_labels(path: str | None, classes: int | None = None) -> list[str] | None:
    """One label per non-blank line. A label becomes a C string: a NUL would cut it short, and other control
    characters are not a label, so both are refused with the line's number."""
    from ..errors import InputError
    from ..paths import read_user_file

    if path is None:
        return None
    data = read_user_file(path, "labels file", MAX_LABELS_FILE_BYTES)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: the labels file is not UTF-8 text (byte {e.start}); save it as UTF-8, one label "
                         "per line") from None
    labels = []
    # Only \n ends a line: str.splitlines() would also split at form feeds and U+2028, turning one label into two.
    for number, line in enumerate(text.split("\n"), 1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        bad = next((c for c in line if unicodedata.category(c) in ("Cc", "Zl", "Zp")), None)
        if bad is not None:
            raise InputError(f"{path}: line {number} holds the control character {bad!r}; a label is printable "
                             "text, one per line")
        labels.append(line)
    if classes is not None and len(labels) != classes:
        raise InputError(f"{path}: {len(labels)} labels but the model's first output has {classes} classes; give "
                         "one label per class, one per line")
    return labels


def cmd_generate(a: argparse.Namespace) -> int:
    from ..boards import find_board
    from ..errors import DoesNotFitError
    from ..firmware import generate, self_test_vectors
    from ..graph import read_graph_file, read_tflite
    from ..model import check_matches_graph, load_dataset
    from ..plan import assess
    from ..report import out_console

    tflite = read_tflite(a.model)
    graph = read_graph_file(a.model)
    board = kernel_choice(a, find_board(a.board, tuple(a.board_file or ())))
    outputs = graph.output_tensors()
    classes = (outputs[0].shape[-1] if outputs[0].shape else 1) if outputs else None
    labels = _read_labels(a.labels, classes)
    bp = assess(graph, board, psram_choice(a), tuple(a.board_file or ()), tflite)
    if not bp.fits:
        print_board_plan(bp)
        raise DoesNotFitError(f"{a.model} does not fit {board.id}; nothing generated")
    data = load_dataset(a.data, need_train=False) if a.data else None
    if data is not None:
        check_matches_graph(data, graph)
    x = data.x_test if data is not None else None
    st = self_test_vectors(tflite, graph, a.self_test, x)
    project = generate(graph, tflite, bp, a.out, Path(a.model).stem, labels, st, a.force, a.keep_tensors)
    for kind, path in (("PlatformIO project", project.platformio), ("Arduino sketch", project.arduino)):
        if path is not None:
            out_console.print(f"{kind}: {path}")
    return 0


def register(command: Command) -> None:
    p = command("generate", cmd_generate, "write TFLM firmware for a board: a PlatformIO project and an "
                                          "Arduino sketch")
    p.add_argument("model", help="a .tflite file")
    board_options(p)
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    psram_options(p)
    kernel_options(p)
    p.add_argument("--self-test", type=int, default=0, metavar="N",
                   help="embed N test inputs and the host's outputs; the firmware checks them at boot")
    p.add_argument("--data", metavar="DATA.npz", help="take the self-test inputs from x_test")
    p.add_argument("--labels", metavar="FILE", help="class labels, one per line")
    p.add_argument("--keep-tensors", action="store_true",
                   help="a debug build that keeps every op's output for `tinyflow measure --per-layer` (TFLM's "
                        "preserve-all-tensors mode; a larger, estimated arena, in PSRAM when SRAM is short)")
    p.add_argument("--force", action="store_true", help="replace an output directory tinyflow did not write")
