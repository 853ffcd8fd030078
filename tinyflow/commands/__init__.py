"""The CLI's subcommands, one module per pipeline stage: each parses its arguments, calls the library, prints.

Every module has ``register(command)``: ``command(name, handler, help)`` adds a subparser and returns it.
The error boundary (a ``TinyflowError`` becomes one line on stderr and an exit code) is ``tinyflow.cli.main``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

Handler = Callable[[argparse.Namespace], int]
Command = Callable[[str, Handler, str], argparse.ArgumentParser]
