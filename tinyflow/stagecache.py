"""Reuse the model stages of an earlier deploy when their inputs have not changed.

The key hashes everything the model stages read: the model file (or SavedModel folder), the data file,
the optimization options, and the versions of tinyflow, TensorFlow, TF-MOT and tflite-micro. The entry
lives in the output directory (``.stages/``), so deleting the build folder clears it, and it moves with
each published run; it is reused only while the folder's marker (see ``outdir``) lists each of its files
with the hash it has now. Plan, generate and measure always run again: they are quick, and a measurement on a
board is only worth what it measures now.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .outdir import open_regular, read_marker, write_bytes, write_text

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
    """The entry for ``key`` in an earlier output folder, if tinyflow's marker there lists each of its files
    with the hash it has now: an entry the user edited or planted is a cache miss, never reused."""
    listed = read_marker(out_dir)
    rel = f"{STAGES_DIR}/model-{key}"
    entry = out_dir / rel
    if listed is None or f"{rel}/report.json" not in listed:
        return None
    data: dict[str, bytes] = {}
    try:
        for name in sorted(os.listdir(entry)):
            blob = _read_regular(entry / name)
            if blob is None or hashlib.sha256(blob).hexdigest() != listed.get(f"{rel}/{name}"):
                return None
            data[name] = blob
        report = json.loads(data["report.json"].decode("utf-8"))
        tflite = data["model_int8.tflite"]
        host = None
        if "host_outputs.npy" in data:
            host = np.load(io.BytesIO(data["host_outputs.npy"]), allow_pickle=False)
    except (OSError, ValueError, KeyError):
        return None  # a damaged entry is only a cache miss
    return CachedModel(report, tflite, host)


def _read_regular(path: Path) -> bytes | None:
    # The bytes that are hashed are the bytes that are used: no window for a swap between the two.
    f = open_regular(path)
    if f is None:
        return None
    with f:
        return f.read()


def save(staging: Path, key: str, entry_data: CachedModel) -> None:
    entry = staging / STAGES_DIR / f"model-{key}"
    if entry.exists():
        shutil.rmtree(entry)
    entry.mkdir(parents=True)
    write_bytes(entry / "model_int8.tflite", entry_data.tflite)
    if entry_data.host_outputs is not None:
        np.save(entry / "host_outputs.npy", entry_data.host_outputs, allow_pickle=False)
    write_text(entry / "report.json", json.dumps(entry_data.report, indent=2))
