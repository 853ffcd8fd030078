"""The user's data file (``DATA.npz`` with x_train, y_train, x_test, y_test): load it and check it."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..graph import ModelGraph

KEYS = ("x_train", "y_train", "x_test", "y_test")
_F32_MAX = float(np.finfo(np.float32).max)
MAX_DATA_BYTES = 4 * 1024**3  # a zip bomb of an .npz would otherwise fill memory


@dataclass(frozen=True)
class Dataset:
    source: Path
    x_train: np.ndarray | None  # None in a test-only file (measuring and evaluating a .tflite need no training data)
    y_train: np.ndarray | None
    x_test: np.ndarray
    y_test: np.ndarray | None
    labels: tuple[str, ...] | None = None  # class names, from an optional "labels" array
    anomaly: np.ndarray | None = None  # 1 marks an anomalous x_test sample (autoencoders: AUC of the error)

    @property
    def has_labels(self) -> bool:
        return self.y_train is not None and self.y_test is not None

    def require_train(self, why: str) -> np.ndarray:
        if self.x_train is None:
            raise InputError(f"{self.source}: has no x_train, which {why} needs; add x_train (and y_train)")
        return self.x_train

    @property
    def is_classification(self) -> bool:
        """Integer class ids (or one-hot rows) rather than values to regress or reconstruct."""
        return self.y_test is not None and _is_class_labels(self.y_test)


def _is_class_labels(y: np.ndarray) -> bool:
    if np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.bool_):
        return True
    # One-hot float rows: every row has exactly one 1 and zeros elsewhere.
    if y.ndim == 2 and y.shape[1] > 1 and np.all((y == 0) | (y == 1)):
        return bool(np.all(y.sum(axis=1) == 1))
    return False


def class_ids(y: np.ndarray) -> np.ndarray:
    """Labels as integer class ids, whether given as ids, a column of ids, or one-hot rows."""
    if y.ndim == 2 and y.shape[1] > 1:
        return np.argmax(y, axis=1)
    return y.reshape(len(y)).astype(np.int64)


def load_dataset(path: str | Path, need_train: bool = True) -> Dataset:
    """``need_train=False``: a file with only x_test (and y_test) is enough (measure, generate, a .tflite)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: data file not found; give an .npz with x_train, y_train, x_test, y_test")
    if not path.is_file():
        raise InputError(f"{path}: the data file is not a regular file (a device, FIFO or folder); give an .npz")
    try:
        with zipfile.ZipFile(path) as z:
            unpacked = sum(i.file_size for i in z.infolist())
    except (OSError, zipfile.BadZipFile):
        unpacked = 0  # np.load below says what is wrong with it
    if unpacked > MAX_DATA_BYTES:
        raise InputError(f"{path}: the arrays unpack to {unpacked:,} B, more than tinyflow loads "
                         f"({MAX_DATA_BYTES:,} B); give a subset of the data")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: np.asarray(npz[k]) for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise InputError(f"{path}: not a readable .npz file ({e}); save it with numpy.savez") from None

    missing = [k for k in (("x_train", "x_test") if need_train else ("x_test",)) if k not in arrays]
    if missing:
        need = "x_train, y_train, x_test, y_test" if need_train else "x_test (and y_test to score accuracy)"
        raise InputError(f"{path}: missing {', '.join(missing)}; the .npz needs {need}")
    has_y = [k for k in ("y_train", "y_test") if k in arrays]
    if len(has_y) == 1 and (need_train or "x_train" in arrays):
        raise InputError(f"{path}: has {has_y[0]} but not the other label array; give both y_train and y_test")

    for k in KEYS:
        if k not in arrays:
            continue
        a = arrays[k]
        if a.dtype == object or np.issubdtype(a.dtype, np.complexfloating) or not (
                np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.bool_)):
            raise InputError(f"{path}: {k} has dtype {a.dtype}; it must be real numbers (int or float)")
        if a.ndim == 0 or len(a) == 0:
            raise InputError(f"{path}: {k} is empty; it needs at least one sample")
        if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)):
            bad = int(np.count_nonzero(~np.isfinite(a)))
            raise InputError(f"{path}: {k} contains {bad} NaN or infinite values; clean or drop those samples")
        # float64 (or int64) values past float32's range become inf in the float32 model and crash the converter.
        if a.dtype.itemsize > 4 and np.issubdtype(a.dtype, np.number) and a.size:
            big = int(np.count_nonzero(np.abs(a.astype(np.float64)) > _F32_MAX))
            if big:
                raise InputError(f"{path}: {k} holds {big} values beyond float32's range (±3.4e38); the model "
                                 "computes in float32: rescale the data")

    for x, y in (("x_train", "y_train"), ("x_test", "y_test")):
        if y in arrays and x in arrays and len(arrays[y]) != len(arrays[x]):
            raise InputError(f"{path}: {x} has {len(arrays[x])} samples but {y} has {len(arrays[y])}; "
                             "they must match")
    if "x_train" in arrays and arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise InputError(f"{path}: x_train samples are {arrays['x_train'].shape[1:]} but x_test samples are "
                         f"{arrays['x_test'].shape[1:]}; they must have the same shape")

    labels = None
    if "labels" in arrays:
        raw = arrays["labels"]
        if raw.ndim != 1 or not (np.issubdtype(raw.dtype, np.str_) or np.issubdtype(raw.dtype, np.integer)):
            raise InputError(f"{path}: labels must be a 1-D array of class names (strings)")
        labels = tuple(str(v) for v in raw)
        for i, name in enumerate(labels):
            if not name or any(ord(c) < 32 or ord(c) == 127 for c in name):
                raise InputError(f"{path}: labels[{i}] is {name!r}: a class name must be non-empty printable text "
                                 "(no NUL, newline or other control character)")

    anomaly = None
    if "anomaly" in arrays:
        anomaly = arrays["anomaly"].reshape(-1)
        if len(anomaly) != len(arrays["x_test"]) or not np.all(np.isin(anomaly, (0, 1))):
            raise InputError(f"{path}: anomaly must hold one 0/1 flag per x_test sample")

    return Dataset(
        source=path,
        x_train=arrays["x_train"].astype(np.float32) if "x_train" in arrays else None,
        y_train=arrays.get("y_train"),
        x_test=arrays["x_test"].astype(np.float32),
        y_test=arrays.get("y_test"),
        labels=labels,
        anomaly=anomaly,
    )


def check_matches_input(data: Dataset, input_shape: tuple[int | None, ...], what: str) -> None:
    """``input_shape`` excludes the batch axis; None/-1 dimensions accept anything."""
    sample = data.x_test.shape[1:]
    ok = len(sample) == len(input_shape) and all(
        d in (None, -1) or d == s for d, s in zip(input_shape, sample, strict=True))
    if not ok:
        want = "x".join("?" if d in (None, -1) else str(d) for d in input_shape)
        got = "x".join(map(str, sample))
        raise InputError(f"{data.source}: samples are {got} but {what} takes {want}; reshape x_train and x_test")


def check_matches_output(data: Dataset, output_shape: tuple[int, ...], what: str) -> None:
    """Labels that the model's output can be scored against: class ids below its class count, one-hot rows
    of its width, or regression targets with as many values per sample as it outputs. ``output_shape``
    excludes the batch axis."""
    per_sample = int(np.prod(output_shape)) if output_shape else 1
    classes = per_sample if per_sample > 1 else 2  # one sigmoid unit scores two classes
    if data.labels is not None and len(data.labels) != classes and data.is_classification:
        raise InputError(f"{data.source}: labels names {len(data.labels)} classes but {what} outputs {classes}; "
                         "give one name per class")
    for key in ("y_train", "y_test"):
        y = getattr(data, key)
        if y is None:
            continue
        if _is_class_labels(y):
            if y.ndim == 2 and y.shape[1] > 1:
                if y.shape[1] != classes:
                    raise InputError(f"{data.source}: {key} has one-hot rows of {y.shape[1]} classes but {what} "
                                     f"outputs {classes}; give labels for the model's classes")
                continue
            if int(np.prod(y.shape[1:])) != 1:
                raise InputError(f"{data.source}: {key} has shape {list(y.shape)}: class ids need one per "
                                 "sample (shape [n] or [n, 1])")
            ids = y.reshape(len(y)).astype(np.int64)
            low, high = int(ids.min()), int(ids.max())
            if low < 0 or high >= classes:
                raise InputError(f"{data.source}: {key} has class ids from {low} to {high} but {what} outputs "
                                 f"{classes} classes (ids 0..{classes - 1}); fix the labels or the model")
        elif int(np.prod(y.shape[1:])) != per_sample:
            raise InputError(f"{data.source}: {key} has {int(np.prod(y.shape[1:]))} values per sample but {what} "
                             f"outputs {per_sample}; as class ids give integers (or one-hot rows), as targets "
                             "one value per output")


def check_matches_graph(data: Dataset, graph: ModelGraph) -> None:
    """The data against a converted model's first input and output (every command that takes both)."""
    inp, out = graph.input_tensors()[0], graph.output_tensors()[0]
    check_matches_input(data, inp.shape[1:], f"{Path(graph.source).name}'s input '{inp.name}'")
    check_matches_output(data, out.shape[1:], f"{Path(graph.source).name}'s output '{out.name}'")
