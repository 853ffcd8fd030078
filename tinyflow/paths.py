"""Where tinyflow's data folders (board files, firmware templates) are, installed or in a checkout."""

from __future__ import annotations

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
