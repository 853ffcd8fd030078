"""The ``tinyflow`` command: parse arguments, call the library, print. The one error boundary lives here.

Each subcommand's parser and handler sit in ``tinyflow/commands/``, one module per pipeline stage.
"""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .commands import Handler, boards, deploy, device, generate, inspect, model, plan
from .errors import TinyflowError


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
        print(f"tinyflow: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("tinyflow: interrupted", file=sys.stderr)
        return 130
