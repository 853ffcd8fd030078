"""What the CLI shows while it works and when it is done: rich progress on stderr, tables on stdout."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..progress import Reporter

# rich writes to its own copy of the terminal's stderr, so that it stays visible while tinyflow hides the
# native chatter TensorFlow prints on file descriptor 2.
err_console = Console(file=os.fdopen(os.dup(2), "w", buffering=1), stderr=True)
# Piped output (CI logs, tests) is not squeezed into 80 columns.
out_console = Console(width=None if sys.stdout.isatty() else 140)


class RichReporter(Reporter):
    """One rich live display for the whole command: a spinner per running stage, a bar per long step.

    Use it as a context manager so the display is gone before the summary is printed.
    """

    def __init__(self) -> None:
        self._live = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                              TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                              console=err_console, transient=True)
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> RichReporter:
        self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.stop()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        task = self._live.add_task(f"[bold]{name}[/bold]", total=None)
        start = time.monotonic()
        try:
            yield
            self._live.console.print(f"[green]✓[/green] {name} [dim]({time.monotonic() - start:.1f} s)[/dim]")
        finally:
            self._live.remove_task(task)

    def progress(self, label: str, done: int, total: int) -> None:
        if label not in self._tasks:
            self._tasks[label] = self._live.add_task(f"  {label}", total=total)
        self._live.update(self._tasks[label], completed=done)
        if done >= total:
            self._live.remove_task(self._tasks.pop(label))

    def note(self, text: str) -> None:
        self._live.console.print(f"[yellow]note:[/yellow] {text}")


def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f} %"


def kib(n: int | None) -> str:
    return "–" if n is None else f"{n / 1024:,.1f} KiB"


def size(n: int | None) -> str:
    """Compact: 512 B, 160 KiB, 8 MiB."""
    if n is None:
        return "–"
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            v = n / scale
            return f"{v:.0f} {unit}" if v == int(v) or v >= 100 else f"{v:.1f} {unit}"
    return f"{n} B"


def table(title: str, columns: list[str], rows: list[list[str]], left: int = 1) -> Table:
    """Numbers right-aligned; the first ``left`` columns (names) left-aligned."""
    t = Table(title=title, title_justify="left", header_style="bold", show_header=any(columns))
    for i, c in enumerate(columns):
        t.add_column(c, justify="left" if i < left or not columns[0] else "right", no_wrap=i == 0)
    for r in rows:
        t.add_row(*r)
    return t
