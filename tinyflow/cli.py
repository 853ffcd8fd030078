"""The ``tinyflow`` command: parse arguments, call the library, print. The one error boundary lives here.

Each subcommand's parser and handler sit in ``tinyflow/commands/``, one module per pipeline stage.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from typing import Any

from . import __version__
from .commands import Handler, boards, deploy, device, generate, inspect, model, plan, search
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
    for stage in (boards, inspect, plan, generate, device, model, deploy, search):
        stage.register(command)
    return parser


class _Terminated(BaseException):
    """SIGTERM or SIGHUP, raised where the program is so that ``with`` blocks (staging folders, child
    processes) clean up. A BaseException, like KeyboardInterrupt, so no ``except Exception`` swallows it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


_SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s is not None)
_RETRY_S = 0.5
_pending: list[int] = []  # the signal being acted on, while main runs


def _unwinding() -> bool:
    """Whether a _Terminated is on its way out: the exception being handled now, or what it interrupted."""
    e, seen = sys.exc_info()[1], set()
    while e is not None and id(e) not in seen:
        if isinstance(e, _Terminated):
            return True
        seen.add(id(e))
        e = e.__context__
    return False


def _on_signal(signum: int, frame: object) -> None:
    # A second signal while cleaning up must not cut the cleanup short.
    for s in _SIGNALS:
        signal.signal(s, signal.SIG_IGN)
    _pending[:] = [signum]
    # An exception raised from a signal handler can land in C code that clears it (seen: the import of a
    # Cython module in numpy), and the run would go on: raise it again until it is seen on its way out.
    if hasattr(signal, "setitimer"):
        signal.signal(signal.SIGALRM, _again)
        signal.setitimer(signal.ITIMER_REAL, _RETRY_S, _RETRY_S)
    raise _Terminated(signum)


def _again(signum: int, frame: object) -> None:
    if _pending and not _unwinding():
        raise _Terminated(_pending[0])


def _stop_retrying() -> None:
    if hasattr(signal, "setitimer"):
        signal.setitimer(signal.ITIMER_REAL, 0)


def _install_signal_handlers() -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}  # Python delivers signals to the main thread only; a caller there keeps its own handling
    previous = {s: signal.signal(s, _on_signal) for s in _SIGNALS}
    if hasattr(signal, "SIGALRM"):
        previous[signal.SIGALRM] = signal.getsignal(signal.SIGALRM)
    return previous


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = _install_signal_handlers()
    try:
        # Nested: a signal while printing another error still ends as one line, not a traceback.
        try:
            return args.handler(args)
        except TinyflowError as e:
            print(f"tinyflow: error: {one_line(str(e))}", file=sys.stderr)
            return e.exit_code
        except KeyboardInterrupt:
            print("tinyflow: interrupted", file=sys.stderr)
            return 130
        except MemoryError:
            print("tinyflow: error: out of memory; give a smaller model or data file, or free memory",
                  file=sys.stderr)
            return 2
        except Exception as e:
            # A bug in tinyflow, not the user's input: still one line (what broke and where to report it);
            # the traceback is for whoever fixes it.
            if os.environ.get("TINYFLOW_DEBUG"):
                raise
            print(f"tinyflow: internal error: {type(e).__name__}: {first_line(e, 200)} (a bug in tinyflow, not "
                  "in your input; run again with TINYFLOW_DEBUG=1 for the traceback and report it)", file=sys.stderr)
            return INTERNAL_ERROR_EXIT
    except _Terminated as t:
        _stop_retrying()
        name = "terminated" if t.signum == getattr(signal, "SIGTERM", None) else "hung up"
        print(f"tinyflow: {name}", file=sys.stderr)
        return 128 + t.signum
    finally:
        if previous:
            _stop_retrying()
            _pending.clear()
            # main() is also called in-process (tests, scripts): leave their signal handling as it was.
            for s, handler in previous.items():
                signal.signal(s, handler if handler is not None else signal.SIG_DFL)
