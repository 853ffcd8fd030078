"""Expensive test inputs (trained models, corpus models) built once per test run, whichever worker asks first.

The suite runs on two pytest-xdist workers (see ``conftest.py``), and a session fixture runs once per worker:
a model trained in a fixture would be trained twice. ``built_once`` keeps what a builder writes in a folder
that every worker of this run shares (the run's base temp, so nothing outlives the run or goes stale after a
code change), behind a file lock: the first worker builds it, the others wait for it and read the same
files. Without xdist it is the run's own base temp, and the lock costs nothing.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from filelock import FileLock

Built = TypeVar("Built", Path, tuple[Path, ...])


def run_dir(factory: pytest.TempPathFactory) -> Path:
    """The folder of this test run that every xdist worker sees (a worker's base temp is one level below it)."""
    base = factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    shared = base / "built-once"
    shared.mkdir(exist_ok=True)
    return shared


def lock(factory: pytest.TempPathFactory, key: str) -> FileLock:
    """The run-wide lock for ``key``: one worker at a time builds what the key names."""
    return FileLock(str(run_dir(factory) / f"{key}.lock"))


def built_once(factory: pytest.TempPathFactory, key: str, build: Callable[[Path], Built]) -> Built:
    """``build(folder)`` once per test run for ``key``; it returns a path or a tuple of paths inside ``folder``,
    which every later call (in any worker) gets back. A build that raised is retried by the next caller."""
    root = run_dir(factory)
    folder, done = root / key, root / f"{key}.json"
    with lock(factory, key):
        if not done.is_file():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            result = build(folder)
            paths = [result] if isinstance(result, Path) else list(result)
            done.write_text(json.dumps({"single": isinstance(result, Path),
                                        "paths": [str(Path(p).relative_to(folder)) for p in paths]}))
        entry = json.loads(done.read_text())
    paths = tuple(folder / p for p in entry["paths"])
    return paths[0] if entry["single"] else paths
