"""``tinyflow generate``: the firmware projects for a board (the firmware stage)."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import Command
from .options import board_options, psram_choice, psram_options
from .plan import print_board_plan


def _read_labels(path: str | None) -> list[str] | None:
    from ..errors import InputError

    if path is None:
        return None
    try:
        return [line.rstrip("\r\n") for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read the labels file ({e}); give one label per line") from None


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
    board = find_board(a.board, tuple(a.board_file or ()))
    labels = _read_labels(a.labels)
    bp = assess(graph, board, psram_choice(a), tuple(a.board_file or ()), tflite)
    if not bp.fits:
        print_board_plan(bp)
        raise DoesNotFitError(f"{a.model} does not fit {board.id}; nothing generated")
    data = load_dataset(a.data, need_train=False) if a.data else None
    if data is not None:
        check_matches_graph(data, graph)
    x = data.x_test if data is not None else None
    st = self_test_vectors(tflite, graph, a.self_test, x)
    project = generate(graph, tflite, bp, a.out, Path(a.model).stem, labels, st, a.force)
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
    p.add_argument("--self-test", type=int, default=0, metavar="N",
                   help="embed N test inputs and the host's outputs; the firmware checks them at boot")
    p.add_argument("--data", metavar="DATA.npz", help="take the self-test inputs from x_test")
    p.add_argument("--labels", metavar="FILE", help="class labels, one per line")
    p.add_argument("--force", action="store_true", help="replace an output directory tinyflow did not write")
