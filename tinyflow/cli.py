"""The ``tinyflow`` command: parse arguments, call the library, print. The one error boundary lives here.

Each subcommand's parser and handler sit in ``tinyflow/commands/``, one module per pipeline stage.
"""

from __future__ import annotations

import argparse
import os
import sys

from . import __version__
from .commands import Handler, boards, deploy, device, generate, inspect, model, plan
from .errors import TinyflowError, first_line

INTERNAL_ERROR_EXIT = 3


def one_line(message: str) -> str:
    """An error message as one line: a library's multi-line text folded, so stderr holds one line per error."""
    return " ".join(part.strip() for part in message.splitlines() if part.strip())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tinyflow", description="Take a Keras model to a microcontroller and "
                                     "prove it works there.")
    parser.add_argument("--version", action="version", version=f"tinyflow {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        return p

    # In the order `tinyflow --help` lists them: inspection first, the whole pipeline last.
    for stage in (boards, inspect, plan, generate, device, model, deploy):
        stage.register(command)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except TinyflowError as e:
        print(f"tinyflow: error: {one_line(str(e))}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("tinyflow: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("tinyflow: error: out of memory; give a smaller model or data file, or free memory", file=sys.stderr)
        return 2
    except Exception as e:
        # A bug in tinyflow, not the user's input: still one line (what broke and where to report it); the
        # traceback is for whoever fixes it.
        if os.environ.get("TINYFLOW_DEBUG"):
            raise
        print(f"tinyflow: internal error: {type(e).__name__}: {first_line(e, 200)} (a bug in tinyflow, not in "
              "your input; run again with TINYFLOW_DEBUG=1 for the traceback and report it)", file=sys.stderr)
        return INTERNAL_ERROR_EXIT
