"""How the library tells its caller what it is doing; the CLI shows it with rich, tests can record it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class Reporter:
    """Silent by default; subclass to display stages, progress and notes."""

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        yield

    def progress(self, label: str, done: int, total: int) -> None:
        pass

    def note(self, text: str) -> None:
        """A warning or remark the user should read (not an error)."""


class RecordingReporter(Reporter):
    def __init__(self) -> None:
        self.stages: list[str] = []
        self.notes: list[str] = []

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.stages.append(name)
        yield

    def note(self, text: str) -> None:
        self.notes.append(text)
