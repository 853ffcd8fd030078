"""Options several commands share, and the argparse types they use."""

from __future__ import annotations

import argparse
from typing import Any


def fraction(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def _int_in(text: str, low: int, high: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"{value}: {what} is {low} to {high}")
    return value


def bench_runs(text: str) -> int:
    """Timed runs: the firmware's BENCH answer holds at most MAX_BENCH_RUNS timings."""
    from ..protocol import MAX_BENCH_RUNS

    return _int_in(text, 1, MAX_BENCH_RUNS, "the number of timed runs")


def warmup_runs(text: str) -> int:
    return _int_in(text, 0, 65535, "the number of warm-up runs")  # a u16 in the BENCH request


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def optimize_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("optimization")
    g.add_argument("--prune", type=fraction, metavar="S", help="magnitude-prune kernels to sparsity S in (0, 1)")
    g.add_argument("--structured-2-4", action="store_true", help="2:4 structured sparsity (50%%)")
    g.add_argument("--qat", action="store_true", help="quantization-aware training (PQAT when pruning)")
    g.add_argument("--epochs", type=positive_int, help="fine-tuning epochs (default: 10 pruning, 3-5 QAT)")
    g.add_argument("--calibration-samples", type=positive_int, default=200,
                   help="training samples used to calibrate int8 ranges (default 200)")


def optimize_options(a: argparse.Namespace) -> Any:
    from ..model import OptimizeOptions

    return OptimizeOptions(prune=a.prune, structured_2_4=a.structured_2_4, qat=a.qat, epochs=a.epochs)


def latency_increase(text: str) -> float:
    """A latency bound as a fraction: "20%", "20" or "0.2"... "20" and "20%" both mean 20 percent."""
    body = text.strip().removesuffix("%")
    try:
        value = float(body)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a percentage (e.g. 20%)") from None
    if text.strip().endswith("%") or value >= 1:
        value /= 100
    if not 0 <= value <= 10:
        raise argparse.ArgumentTypeError(f"{text!r}: the latency increase is 0% to 1000%")
    return value


def rewrite_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-rewrite", action="store_true",
                   help="keep the converter's graph (by default an exact graph rewrite, patch-based inference "
                        "or channel groups, is used when it gives a smaller arena)")
    p.add_argument("--max-latency-increase", type=latency_increase, default=0.20, metavar="PCT",
                   help="the most a rewrite may add to the latency estimate (default 20%%)")


def board_options(p: argparse.ArgumentParser, help_text: str = "board id or alias (see `tinyflow boards`)") -> None:
    p.add_argument("--board", default="esp32s3", help=help_text)
    p.add_argument("--board-file", action="append", metavar="PATH", help="load an extra board file")


def psram_options(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--psram", action="store_true", help="put the arena in PSRAM")
    g.add_argument("--no-psram", action="store_true", help="never put the arena in PSRAM")


def psram_choice(a: argparse.Namespace) -> bool | None:
    return True if a.psram else (False if a.no_psram else None)


def kernel_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("kernels")
    g.add_argument("--kernels", choices=("board", "reference"), default="board",
                   help="board: the board file's kernel_library (e.g. ESP-NN); reference: TFLM's reference kernels "
                        "(on ESP-IDF boards the same esp-tflite-micro built with ESP_NN off), planned with the "
                        "reference rules, to measure one against the other")
    g.add_argument("--kernel-library-version", metavar="VERSIONS",
                   help="the exact kernel library versions to plan and pin, e.g. \"esp-tflite-micro 1.4.0 + "
                        "esp-nn 1.2.3\" (default: the board file's kernel_library_version); one tinyflow has no "
                        "checked rules for is refused")


def kernel_choice(a: argparse.Namespace, board: Any) -> Any:
    """``board`` with ``--kernels`` and ``--kernel-library-version`` applied (an unknown version: InputError)."""
    from ..plan import with_kernels

    return with_kernels(board, a.kernels, a.kernel_library_version)
