"""Load a user's model: Keras 3 ``.keras``, legacy tf_keras ``.h5``/``.keras``/SavedModel, or a ready ``.tflite``."""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError, first_line
from ..graph import read_tflite


@dataclass(frozen=True)
class LoadedModel:
    source: Path
    format: str  # "keras3", "tf_keras", "savedmodel", "tflite"
    keras_model: Any | None  # Keras 3 as saved, or tf_keras (a Keras 3 model rebuilt in tf_keras if bridged)
    tflite: bytes | None  # set only for a .tflite input, which skips optimize and convert
    bridged: bool = False  # a Keras 3 model rebuilt in tf_keras, because TF-MOT needs tf_keras


def _keras_version_of_zip(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            if "metadata.json" in names:
                return str(json.loads(z.read("metadata.json")).get("keras_version", ""))
            if "config.json" in names:
                return ""
    except (zipfile.BadZipFile, OSError, json.JSONDecodeError, KeyError):
        pass
    raise InputError(f"{path}: not a valid .keras file (not a zip with config.json); re-save it with model.save()")


def _keras_version_of_h5(path: Path) -> str:
    try:
        import h5py

        with h5py.File(path, "r") as f:
            v = f.attrs.get("keras_version", "")
            return v.decode() if isinstance(v, bytes) else str(v)
    except OSError:
        raise InputError(f"{path}: not a valid HDF5 model file; re-save it with model.save('model.h5')") from None


def _load_keras3(path: Path, bridge: bool) -> Any:
    from .tfenv import keras3

    keras = keras3()
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as e:  # Keras raises many types for a bad file; all mean the same to the user
        if "safe_mode" in str(e) or "Lambda" in str(e):
            # Keras' own advice (safe_mode=False) is an option tinyflow does not have, on purpose.
            raise InputError(f"{path}: the model has a Lambda layer (saved Python code), which tinyflow does not "
                             "run when loading; replace it with a built-in layer or a registered custom layer"
                             ) from None
        raise InputError(f"{path}: Keras 3 could not load this model ({first_line(e)})") from None
    if not bridge:
        return model
    from .bridge import rebuild_in_tf_keras

    return rebuild_in_tf_keras(model, path)


def _load_tf_keras(path: Path) -> Any:
    from .tfenv import tf_keras

    tfk = tf_keras()
    try:
        return tfk.models.load_model(path, compile=False)
    except Exception as e:
        raise InputError(f"{path}: tf_keras could not load this model ({first_line(e)}); custom layers are not "
                         "supported") from None


def load_model(path: str | Path, bridge: bool = False) -> LoadedModel:
    """Load any supported model file. ``bridge``: rebuild a Keras 3 model in tf_keras (see ``bridge``), which
    TF-MOT's pruning and QAT need; post-training quantization converts the Keras 3 model as it is."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: model file not found")
    suffix = path.suffix.lower()
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise InputError(f"{path}: a directory but not a SavedModel (no saved_model.pb); give a .keras, .h5, "
                             "SavedModel directory or .tflite")
        return LoadedModel(path, "savedmodel", _load_tf_keras(path), None)
    if suffix == ".tflite":
        return LoadedModel(path, "tflite", None, read_tflite(path))
    if suffix == ".keras":
        version = _keras_version_of_zip(path)
        if version.startswith("3"):
            return LoadedModel(path, "keras3", _load_keras3(path, bridge), None, bridge)
        return LoadedModel(path, "tf_keras", _load_tf_keras(path), None)
    if suffix in (".h5", ".hdf5"):
        version = _keras_version_of_h5(path)
        if version.startswith("3"):
            return LoadedModel(path, "keras3", _load_keras3(path, bridge), None, bridge)
        return LoadedModel(path, "tf_keras", _load_tf_keras(path), None)
    raise InputError(f"{path}: unknown model format '{suffix or path.name}'; give a .keras, .h5, SavedModel "
                     "directory or .tflite")


def model_io_shapes(model: Any) -> tuple[list[tuple], list[tuple]]:
    """Input and output shapes of a tf_keras model, without the batch axis."""
    return ([tuple(t.shape[1:]) for t in model.inputs], [tuple(t.shape[1:]) for t in model.outputs])
