"""Reuse the model stages of an earlier deploy when their inputs have not changed.

The key hashes everything the model stages read: the model file (or SavedModel folder), the data file,
the optimization options, and the versions of tinyflow, TensorFlow, TF-MOT and tflite-micro. The entry
lives in the output directory (``.stages/``), so deleting the build folder clears it, and it moves with
each published run. Plan, generate and measure always run again: they are quick, and a measurement on a
board is only worth what it measures now.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .outdir import MARKER, write_bytes, write_text

STAGES_DIR = ".stages"


@dataclass(frozen=True)
class CachedModel:
    report: dict[str, Any]  # the model, optimize and accuracy parts of report.json
    tflite: bytes
    host_outputs: np.ndarray | None  # the host TFLM's int8 outputs for x_test


def _versions() -> str:
    out = [__version__]
    for pkg in ("tensorflow", "tf-keras", "tensorflow-model-optimization", "tflite-micro"):
        try:
            out.append(f"{pkg}={version(pkg)}")
        except PackageNotFoundError:
            out.append(f"{pkg}=none")
    return ";".join(out)


def _hash_path(h: Any, path: Path) -> None:
    if path.is_dir():
        for p in sorted(path.rglob("*")):
            if p.is_file():
                h.update(str(p.relative_to(path)).encode())
                h.update(p.read_bytes())
    elif path.is_file():
        h.update(path.read_bytes())


def model_key(model_path: str | Path, data_path: str | Path | None, settings: str) -> str:
    h = hashlib.sha256()
    _hash_path(h, Path(model_path))
    h.update(b"|data|")
    if data_path:
        _hash_path(h, Path(data_path))
    h.update(f"|{settings}|{_versions()}".encode())
    return h.hexdigest()[:16]


def load(out_dir: Path, key: str) -> CachedModel | None:
    entry = out_dir / STAGES_DIR / f"model-{key}"
    if not (out_dir / MARKER).exists() or not (entry / "report.json").is_file():
        return None
    try:
        report = json.loads((entry / "report.json").read_text())
        tflite = (entry / "model_int8.tflite").read_bytes()
        host = None
        if (entry / "host_outputs.npy").is_file():
            host = np.load(entry / "host_outputs.npy", allow_pickle=False)
    except (OSError, ValueError):
        return None  # a damaged entry is only a cache miss
    return CachedModel(report, tflite, host)


def save(staging: Path, key: str, entry_data: CachedModel) -> None:
    entry = staging / STAGES_DIR / f"model-{key}"
    if entry.exists():
        shutil.rmtree(entry)
    entry.mkdir(parents=True)
    write_bytes(entry / "model_int8.tflite", entry_data.tflite)
    if entry_data.host_outputs is not None:
        np.save(entry / "host_outputs.npy", entry_data.host_outputs, allow_pickle=False)
    write_text(entry / "report.json", json.dumps(entry_data.report, indent=2))
