"""``tinyflow boards``: the boards tinyflow knows (boards are data files)."""

from __future__ import annotations

import argparse
import json

from . import Command


def cmd_boards(a: argparse.Namespace) -> int:
    from ..boards import all_boards
    from ..report import out_console, size, table

    boards = all_boards(tuple(a.board_file or ()))
    if a.json:
        print(json.dumps([{"id": b.id, "aliases": list(b.aliases), "name": b.name, "mcu": b.mcu,
                           "cpu_mhz": b.cpu_mhz, "arena_sram_bytes": b.arena_sram_bytes,
                           "psram_bytes": b.psram_bytes, "flash_bytes": b.flash_bytes,
                           "max_app_bytes": b.max_app_bytes, "kernel_library": b.kernel_library,
                           "kernel_library_version": b.kernel_library_version,
                           "simulated": b.simulated, "source": str(b.source)} for b in boards], indent=2))
        return 0
    rows = [[b.id, " ".join(b.aliases), b.mcu, str(b.cpu_mhz or "host"), size(b.arena_sram_bytes),
             size(b.psram_bytes) if b.psram_bytes else "–", size(b.max_app_bytes),
             b.kernel_library + (f" ({b.kernel_library_version})" if b.kernel_library_version else "")]
            for b in boards]
    out_console.print(table("boards", ["id", "aliases", "MCU", "MHz", "arena SRAM", "PSRAM", "app flash",
                                       "kernels"], rows, left=3))
    return 0


def register(command: Command) -> None:
    p = command("boards", cmd_boards, "list the boards tinyflow knows")
    p.add_argument("--board-file", action="append", metavar="PATH", help="also load this board file")
    p.add_argument("--json", action="store_true", help="print JSON")
