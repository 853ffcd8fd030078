"""The Optuna study: its storage (the distribution), sampler, pruner and constraints, and the workers.

Storage is the only thing workers share. The default is a SQLite file in the output folder (a search
resumes from it); ``--storage postgresql://...`` lets workers on several hosts share one study, which is
Optuna's documented distributed mode. ``--workers K`` starts K local processes, each running
``study.optimize`` on the same storage. A heartbeat marks a trial whose worker died (killed, host lost)
as FAIL once its grace period has passed, when the next trial starts anywhere.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError, TinyflowError, first_line
from .trial import RECORD

DIRECTIONS = ("maximize", "minimize", "minimize")  # accuracy, latency, arena
OBJECTIVES = ("accuracy", "latency_us", "arena_bytes")


def optuna_quiet() -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def default_storage(out_dir: Path) -> str:
    return f"sqlite:///{out_dir.absolute() / 'study.db'}"


def open_storage(url: str, heartbeat_s: float | None) -> Any:
    """Optuna's RDB storage for ``url`` (SQLite, PostgreSQL, MySQL), with a heartbeat for dead workers."""
    optuna = optuna_quiet()
    kwargs: dict[str, Any] = {}
    given, url = url, engine_url(url)
    if url.startswith("sqlite"):
        # Several local workers write one file: wait for the lock rather than fail at once.
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 120}}
    else:
        kwargs["engine_kwargs"] = {"pool_pre_ping": True}
    if heartbeat_s:
        kwargs.update(heartbeat_interval=max(1, int(heartbeat_s)), grace_period=max(2, int(3 * heartbeat_s)))
    for attempt in range(_ATTEMPTS):
        try:
            return optuna.storages.RDBStorage(url, **kwargs)
        except ModuleNotFoundError as e:
            raise InputError(f"--storage {shown_url(given)}: the database driver is missing ({e.name}); pip install "
                             f"{'psycopg2-binary' if 'postgres' in url else e.name}") from None
        except Exception as e:  # sqlalchemy's many errors: a bad URL, a refused connection, bad credentials
            # Workers starting together on an empty database race to create its tables; the loser's
            # CREATE fails on a duplicate, and the tables are there when it tries again.
            if _racing(e) and attempt + 1 < _ATTEMPTS:
                time.sleep(0.3 + random.random())
                continue
            raise InputError(f"--storage {shown_url(given)}: cannot open the study storage ({first_line(e, 200)}); "
                             "check the URL and that the database server is up") from None
    raise AssertionError("unreachable")


_ATTEMPTS = 6


def _racing(e: BaseException) -> bool:
    text = str(e).lower()
    return any(k in text for k in ("duplicate key", "already exists", "unique constraint", "database is locked"))


def engine_url(url: str) -> str:
    """``url`` with the PostgreSQL driver tinyflow depends on (psycopg2) named: SQLAlchemy 2.1 otherwise
    picks psycopg 3 for a bare ``postgresql://``."""
    for bare in ("postgresql://", "postgres://"):
        if url.startswith(bare):
            return "postgresql+psycopg2://" + url[len(bare):]
    return url


def shown_url(url: str) -> str:
    """The URL without its password (errors are printed and logged)."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest:
        cred, _, host = rest.rpartition("@")
        return f"{scheme}://{cred.split(':')[0]}:***@{host}" if ":" in cred else url
    return url


def constraints(trial: Any) -> list[float]:
    """Optuna's constraints_func: each value <= 0 when that part of the budget holds."""
    record = trial.user_attrs.get(RECORD) or {}
    return list(record.get("constraints") or [0.0, 0.0, 0.0, 0.0])


def make_sampler(name: str, seed: int | None, startup_trials: int) -> Any:
    optuna = optuna_quiet()
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup_trials, constraints_func=constraints,
                                          multivariate=True)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, startup_trials),
                                             constraints_func=constraints)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise InputError(f"--sampler {name}: give tpe, nsga2 or random")


def make_pruner(name: str, startup_trials: int) -> Any:
    optuna = optuna_quiet()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=1)
    if name == "none":
        return None
    raise InputError(f"--pruner {name}: give median or none")


def open_study(storage: Any, name: str, sampler: Any, identity: dict[str, Any]) -> Any:
    """The study ``name`` in ``storage``, created on first use; a study made for another board, space,
    budget or data is refused (its trials would not be comparable)."""
    optuna = optuna_quiet()
    try:
        study = optuna.create_study(storage=storage, study_name=name, directions=list(DIRECTIONS), sampler=sampler,
                                    load_if_exists=True)
    except ValueError as e:  # an existing study of the same name with other directions
        raise InputError(f"--study {name}: {first_line(e)}; choose another --study") from None
    known = study.user_attrs.get("search")
    if known is None:
        study.set_user_attr("search", identity)
    elif known != identity:
        diff = [k for k in identity if known.get(k) != identity[k]]
        raise InputError(f"--study {name}: this study was made with another {', '.join(diff)} "
                         f"({', '.join(f'{k}={json.dumps(known.get(k))}' for k in diff)}); give the same options to "
                         "resume it, or another --study or --out")
    return study


@dataclass(frozen=True)
class WorkerJob:
    """What a worker process needs (JSON in a file): the search's options and its share of the trials."""

    options: dict[str, Any]
    data: str
    out_dir: str
    trials: int
    index: int


def run_local_workers(jobs: list[WorkerJob], out_dir: Path, poll: Callable[[], None],
                      poll_s: float = 2.0) -> None:
    """Run each job in a process of its own, calling ``poll`` while they run; one that fails is an error
    (after the others finish: their trials count)."""
    with _job_files(jobs, out_dir) as files:
        procs = []
        try:
            for path in files:
                log = open(path.with_suffix(".log"), "w")  # noqa: SIM115 (closed below, with the process)
                # stdin is a pipe only we hold: if this process dies, the worker reads EOF and stops.
                procs.append((subprocess.Popen([sys.executable, "-c", _WORKER, str(path)], stdin=subprocess.PIPE,
                                               stdout=log, stderr=subprocess.STDOUT), log, path))
            while any(p.poll() is None for p, _, _ in procs):
                poll()
                time.sleep(poll_s)
            poll()
        finally:
            for p, log, _ in procs:
                if p.poll() is None:
                    p.terminate()
                    try:
                        p.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        p.kill()
                        p.wait()
                log.close()
        failed = [(p.returncode, path.with_suffix(".log")) for p, _, path in procs if p.returncode != 0]
        if failed:
            code, log_path = failed[0]
            lines = [ln for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
            why = next((ln for ln in reversed(lines) if "error" in ln.lower()), lines[-1] if lines else "no output")
            raise TinyflowError(f"{len(failed)} of {len(procs)} search workers failed (exit {code}): {why.strip()}")


_WORKER = "import sys; from tinyflow.search.run import worker_main; sys.exit(worker_main(sys.argv[1]))"


@contextlib.contextmanager
def _job_files(jobs: list[WorkerJob], out_dir: Path) -> Iterator[list[Path]]:
    folder = out_dir / ".workers"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    try:
        for job in jobs:
            path = folder / f"worker-{os.getpid()}-{job.index}.json"
            path.write_text(json.dumps(job.__dict__))
            paths.append(path)
        yield paths
    finally:
        for path in paths:
            for p in (path, path.with_suffix(".log")):
                with contextlib.suppress(OSError):
                    p.unlink()
        with contextlib.suppress(OSError):
            folder.rmdir()


def watch_parent() -> None:
    """In a worker: exit when the parent goes away (its end of our stdin closes)."""
    import threading

    def wait() -> None:
        with contextlib.suppress(Exception):
            sys.stdin.read()
        os._exit(1)

    threading.Thread(target=wait, daemon=True).start()
