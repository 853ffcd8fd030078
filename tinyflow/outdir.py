"""Output directories that are all or nothing: build in a staging folder, publish by rename.

A directory holding files that tinyflow did not write is never touched without ``force``. A directory
tinyflow wrote before (it carries a marker file) is replaced on success, so re-running a command is safe.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from types import TracebackType

from .errors import InputError, OutputExistsError

MARKER = ".tinyflow-output"


def check_output_dir(path: Path, force: bool) -> None:
    if path.exists() and not path.is_dir():
        raise OutputExistsError(f"{path}: exists and is a file, not a directory; choose another --out")
    if path.is_dir() and any(path.iterdir()) and not (path / MARKER).exists() and not force:
        raise OutputExistsError(f"{path}: exists and holds files tinyflow did not write; choose another --out "
                                "or pass --force to replace it")


class OutputDir:
    """``with OutputDir(dest, force) as out:`` write into ``out.path``; ``out.publish()`` makes it ``dest``."""

    def __init__(self, dest: str | Path, force: bool = False):
        self.dest = Path(dest).absolute()
        self.force = force
        self.path = self.dest  # replaced by the staging folder on enter
        self.published = False

    def __enter__(self) -> OutputDir:
        check_output_dir(self.dest, self.force)
        try:
            self.dest.parent.mkdir(parents=True, exist_ok=True)
            self.path = Path(tempfile.mkdtemp(prefix=f".{self.dest.name}.staging-", dir=self.dest.parent))
        except OSError as e:
            raise InputError(f"{self.dest}: cannot create the output directory ({e.strerror})") from None
        (self.path / MARKER).write_text("This directory was written by tinyflow; re-running replaces it.\n")
        return self

    def publish(self) -> Path:
        trash = None
        if self.dest.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{self.dest.name}.old-", dir=self.dest.parent))
            self.dest.rename(trash / "old")
        self.path.rename(self.dest)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
        self.path = self.dest
        self.published = True
        return self.dest

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if not self.published:
            shutil.rmtree(self.path, ignore_errors=True)


def write_bytes(path: Path, data: bytes) -> None:
    """Write a file by rename, so a reader never sees half of it."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))
