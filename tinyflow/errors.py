"""The errors tinyflow reports to its user: bad input, a board that does not fit, a device that fails.

Anything raised as a ``TinyflowError`` is the user's input, board, toolchain or device at fault, not a
bug in tinyflow: the CLI prints its message on one line and exits with its code (2: bad input, 1: does
not fit). Anything else is a bug: the CLI names it on one line as an internal error (exit 3) and shows
the traceback only with ``TINYFLOW_DEBUG=1`` (the tests set it).
"""

from __future__ import annotations


class TinyflowError(Exception):
    """A problem the user can fix; ``str(err)`` names the file, the problem and the fix."""

    exit_code = 2


class InputError(TinyflowError):
    """A model, data file, board file or option that tinyflow cannot use as given."""


class OutputExistsError(TinyflowError):
    """The output directory holds files tinyflow did not write, and ``--force`` was not given."""


class DoesNotFitError(TinyflowError):
    """The model does not fit the board (arena, flash) or would crash TFLM; exit code 1."""

    exit_code = 1


class ToolchainError(TinyflowError):
    """An external tool (PlatformIO, esptool, a compiler) is missing or failed."""


class DeviceError(TinyflowError):
    """The device did not answer, answered garbage, runs another model, or the link is gone."""


def first_line(error: BaseException | str, limit: int = 300) -> str:
    """The first non-empty line of a caught error's text (a library's long message or MLIR dump), for a
    one-line message; the error's type when it has no text."""
    text = str(error)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if lines:
        return lines[0][:limit]
    return type(error).__name__ if isinstance(error, BaseException) else "no message"
