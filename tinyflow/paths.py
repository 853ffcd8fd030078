"""Where tinyflow's data folders (board files, firmware templates) are, installed or in a checkout, and how
a file the user names is read (bounded, regular files only)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _data_dir(name: str) -> Path:
    # A wheel carries the folder inside the package; an editable install or a checkout has it at
    # the repository root, next to the package.
    for candidate in (_PACKAGE / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"tinyflow's '{name}' folder is missing from {_PACKAGE}; reinstall tinyflow")


def boards_dir() -> Path:
    return _data_dir("boards")


def templates_dir() -> Path:
    return _data_dir("firmware_templates")


def report_templates_dir() -> Path:
    return _data_dir("report_templates")


def read_user_file(path: str | Path, what: str, limit: int) -> bytes:
    """The bytes of a file the user named (a model, board file, labels), refusing what is not a regular
    file or is larger than ``limit``: ``/dev/zero`` would read without bound and a FIFO would block."""
    from .errors import InputError

    path = Path(path)
    try:
        # O_NONBLOCK: opening a FIFO with no writer must not hang; fstat then refuses it.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise InputError(f"{path}: {what} not found; check the path") from None
    except OSError as e:
        raise InputError(f"{path}: cannot open the {what} ({e.strerror})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise InputError(f"{path}: the {what} is not a regular file (a device, FIFO or folder); give a file")
    with os.fdopen(fd, "rb") as f:
        if st.st_size > limit:
            raise InputError(f"{path}: the {what} is {st.st_size:,} B, more than tinyflow reads "
                             f"({limit:,} B); give the right file")
        try:
            data = f.read(limit + 1)
        except OSError as e:
            raise InputError(f"{path}: cannot read the {what} ({e.strerror})") from None
    if len(data) > limit:
        raise InputError(f"{path}: the {what} grew past {limit:,} B while being read; give a stable file")
    return data
