"""Convert a Keras model (Keras 3 or tf_keras) to a full-integer int8 ``.tflite`` (int8 in, int8 out) for TFLM.

TF's converter can crash the process (a tf_keras GRU segfaults in it), so it never runs in tinyflow's own
process: the parent traces the model with batch size 1 into a SavedModel and a child converts it. Loading
the traced function back and converting it gives the same bytes as converting it in place (checked on
tf_keras models), and it is the only form that works for Keras 3 models, whose variables the in-process
concrete-function path leaves unfrozen.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, first_line

DEFAULT_CALIBRATION_SAMPLES = 200
_TIMEOUT_S = 1800
_ERROR_TAG = "tinyflow-convert-error: "
_CHILD = "import sys; from tinyflow.model.convert import _child; _child(*sys.argv[1:4])"

# Layer types whose conversion is known to be fragile; named when the converter crashes without a message.
_FRAGILE = ("GRU", "LSTM", "SimpleRNN", "Bidirectional", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D", "RNN", "Lambda",
            "TimeDistributed", "Attention", "MultiHeadAttention")


def _layer_types(model: Any) -> list[str]:
    seen: dict[str, None] = {}
    stack = list(getattr(model, "layers", []))
    while stack:
        layer = stack.pop(0)
        seen.setdefault(type(layer).__name__)
        stack += list(getattr(layer, "layers", []) or [])
        inner = getattr(layer, "layer", None) or getattr(layer, "forward_layer", None)
        if inner is not None:
            stack.append(inner)
    return list(seen)


def to_int8_tflite(model: Any, calibration: np.ndarray, samples: int = DEFAULT_CALIBRATION_SAMPLES,
                   seed: int = 0, source: str | Path | None = None) -> bytes:
    """The int8 ``.tflite`` of ``model`` (see ``convert_int8``)."""
    return convert_int8(model, calibration, samples, seed, source)[0]


def convert_int8(model: Any, calibration: np.ndarray, samples: int = DEFAULT_CALIBRATION_SAMPLES,
                 seed: int = 0, source: str | Path | None = None) -> tuple[bytes, tuple[str, ...]]:
    """The int8 ``.tflite`` and the rewrites made for the converter (``for_tflite``), one sentence each.

    ``calibration``: float samples (from the training set) that set the activation ranges.

    The model is traced with batch size 1: TFLM runs one sample at a time, and a fixed batch keeps the
    converter from adding SHAPE/STRIDED_SLICE/PACK ops for a dynamic batch (e.g. around Flatten).
    """
    from .tfenv import native_stderr_silenced, tensorflow

    what = f"{source}" if source else f"model '{model.name}'"
    tf = tensorflow()
    if len(model.inputs) != 1:
        raise InputError(f"{what}: the model has {len(model.inputs)} inputs; tinyflow converts single-input models")
    shape = [1, *[int(d) if d is not None else -1 for d in model.inputs[0].shape[1:]]]
    if any(d <= 0 for d in shape):
        raise InputError(f"{what}: the model's input has an unknown dimension {shape[1:]}; give it a fixed shape "
                         "(keras.Input(shape=...) with numbers)")
    rng = np.random.default_rng(seed)
    picks = rng.permutation(len(calibration))[:samples]
    calib = np.ascontiguousarray(calibration[picks].astype(np.float32))
    model, rewrites = for_tflite(model, calib[:8])

    with tempfile.TemporaryDirectory(prefix="tinyflow-convert-") as tmp:
        saved, calib_path, out = Path(tmp) / "saved", Path(tmp) / "calibration.npy", Path(tmp) / "model.tflite"
        serve = tf.function(lambda x: model(x, training=False), input_signature=[tf.TensorSpec(shape, tf.float32)])
        try:
            with native_stderr_silenced():
                _save_traced(tf, model, serve, saved)
        except Exception as e:  # tracing runs the model's own Python: anything can go wrong there
            raise InputError(f"{what}: TensorFlow could not trace the model for conversion "
                             f"({first_line(e)}); {_layer_hint(str(e), model)}") from None
        np.save(calib_path, calib)
        try:
            proc = _run_converter(str(saved), str(calib_path), str(out))
        except subprocess.TimeoutExpired:
            raise InputError(f"{what}: TF's converter did not finish in {_TIMEOUT_S // 60} minutes") from None
        if proc.returncode < 0 or (proc.returncode != 0 and _ERROR_TAG not in proc.stderr):
            fragile = [t for t in _layer_types(model) if t in _FRAGILE]
            hint = (f"the model has {', '.join(fragile)} layers, which TF's converter is known to fail on; "
                    "rebuild them with unroll=True or try the Keras 3 version of the model"
                    if fragile else "simplify the model or convert it yourself and pass the .tflite")
            how = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit code {proc.returncode}"
            raise InputError(f"{what}: TF's converter crashed ({how}) converting to int8; {hint}")
        if proc.returncode != 0:
            msg = proc.stderr.split(_ERROR_TAG, 1)[1].strip().splitlines()[0]
            raise InputError(f"{what}: TFLite could not convert the model to int8: {msg[:300]}; "
                             f"{_layer_hint(msg, model)}")
        return out.read_bytes(), rewrites


def _child_env() -> dict[str, str]:
    return dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"))


def _run_converter(saved: str, calib_path: str, out_path: str) -> subprocess.CompletedProcess:
    """One conversion in a child: the kept one when ``kept_converter`` is active, else a fresh one."""
    if _kept is not None:
        return _kept.run(saved, calib_path, out_path)
    return subprocess.run([sys.executable, "-c", _CHILD, saved, calib_path, out_path], capture_output=True,
                          text=True, timeout=_TIMEOUT_S, env=_child_env())


_SERVE = "from tinyflow.model.convert import _serve; _serve()"
_DONE_TAG = "tinyflow-convert-done: "
_KEPT_RUNS = 50


class _KeptConverter:
    """A converter child that stays up between conversions: a fresh child spends most of its time
    importing TensorFlow (seconds), which a search converting hundreds of candidates pays once. A crash
    kills only the child, reported as a fresh child's crash is; the next conversion starts a new one."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.runs = 0

    def _start(self) -> subprocess.Popen:
        if self.proc is not None and self.runs >= _KEPT_RUNS:
            self.close()  # TF's converter keeps memory between conversions: a fresh child now and then
        if self.proc is None or self.proc.poll() is not None:
            self.runs = 0
            # stderr to a file, not a pipe: TF's native logging must never fill a pipe nobody drains. It
            # lives as long as the child, so no `with`.
            self.errors = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
            self.proc = subprocess.Popen([sys.executable, "-c", _SERVE], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=self.errors, text=True, env=_child_env())
        return self.proc

    def run(self, saved: str, calib_path: str, out_path: str) -> subprocess.CompletedProcess:
        import select

        proc = self._start()
        self.runs += 1
        args = [saved, calib_path, out_path]
        try:
            proc.stdin.write("\t".join(args) + "\n")
            proc.stdin.flush()
        except BrokenPipeError:
            pass  # it died before reading: its exit code below says how
        deadline = time.monotonic() + _TIMEOUT_S
        while True:
            ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                self.close()
                raise subprocess.TimeoutExpired(args, _TIMEOUT_S)
            line = proc.stdout.readline()
            if not line:  # the child is gone: a crash, as a fresh child's would be reported
                code = proc.wait()
                self.errors.seek(0)
                return subprocess.CompletedProcess(args, code, "", self.errors.read())
            if line.startswith(_DONE_TAG):
                error = line[len(_DONE_TAG):].strip()
                return subprocess.CompletedProcess(args, 3 if error else 0, "", error)

    def close(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
            self.errors.close()


_kept: _KeptConverter | None = None


@contextlib.contextmanager
def kept_converter() -> Iterator[None]:
    """Within this block every conversion of this process goes to one long-lived converter child."""
    global _kept
    if _kept is not None:
        yield
        return
    _kept = _KeptConverter()
    try:
        _kept._start()  # now: its TensorFlow import overlaps whatever the caller does before converting
        yield
    finally:
        kept, _kept = _kept, None
        kept.close()


# Recurrent layers that TF's converter segfaults on unless their time loop is unrolled (Keras 3 LSTM/GRU,
# tf_keras GRU); tf_keras's LSTM converts to the fused UNIDIRECTIONAL_SEQUENCE_LSTM and is left as it is.
_UNROLL = {"keras": ("LSTM", "GRU", "SimpleRNN"), "tf_keras": ("GRU", "SimpleRNN")}


def _keras_of(model: Any) -> tuple[str, Any]:
    from .tfenv import keras3, tf_keras

    kind = "tf_keras" if type(model).__module__.startswith("tf_keras") else "keras"
    return kind, tf_keras() if kind == "tf_keras" else keras3()


def for_tflite(model: Any, probe: np.ndarray) -> tuple[Any, tuple[str, ...]]:
    """The model rewritten into layers TF's converter and TFLM handle, computing the same function.

    - Keras 3 ``UpSampling1D``/``UpSampling2D`` (nearest) repeats pixels with ``ops.repeat``, which converts to TILE (no
      TFLM kernel); ``tf.image.resize(nearest)`` with an integer factor picks the same pixels and converts
      to RESIZE_NEAREST_NEIGHBOR.
    - Recurrent layers the converter crashes on get ``unroll=True``: the same cell, weights and outputs.

    Each rewrite is kept only if the rewritten model's outputs equal the original's on ``probe``.
    Returns the model to convert and a sentence per rewrite (empty when nothing changed).
    """
    kind, k = _keras_of(model)
    if not hasattr(model, "layers") or type(model).__name__ not in ("Functional", "Sequential", "Model"):
        return model, ()
    if not any(type(layer).__name__ in (*_UNROLL[kind], "UpSampling1D", "UpSampling2D") for layer in model.layers):
        return model, ()
    notes: list[str] = []
    from .tfenv import tensorflow

    tf = tensorflow()

    class ResizeNearest(k.layers.Layer):
        def __init__(self, size: tuple[int, int], **kw: Any):
            super().__init__(**kw)
            self.size = tuple(int(s) for s in size)

        def call(self, x: Any) -> Any:
            h, w = int(x.shape[1]), int(x.shape[2])
            return tf.image.resize(x, [h * self.size[0], w * self.size[1]], method="nearest")

    class ResizeNearest1D(k.layers.Layer):
        def __init__(self, size: int, **kw: Any):
            super().__init__(**kw)
            self.size = int(size)

        def call(self, x: Any) -> Any:
            steps = int(x.shape[1])
            y = tf.image.resize(tf.expand_dims(x, 2), [steps * self.size, 1], method="nearest")
            return tf.squeeze(y, 2)

    def clone(layer: Any) -> Any:
        name = type(layer).__name__
        cfg = layer.get_config()
        if name == "UpSampling1D":
            # Keras 3 repeats with TILE, tf_keras concatenates one slice per step (more than TFLM's 10 inputs).
            notes.append(f"{layer.name} (UpSampling1D) as RESIZE_NEAREST_NEIGHBOR (as converted, it needs TILE or "
                         "a CONCATENATION of more inputs than TFLM takes)")
            return ResizeNearest1D(cfg["size"], name=layer.name)
        if name in _UNROLL[kind] and not cfg.get("unroll"):
            notes.append(f"{layer.name} ({name}) unrolled over its time steps (TF's converter crashes on the loop)")
            return type(layer).from_config({**cfg, "unroll": True})
        if (kind == "keras" and name == "UpSampling2D" and cfg.get("interpolation", "nearest") == "nearest"
                and cfg.get("data_format", "channels_last") == "channels_last"):
            notes.append(f"{layer.name} (UpSampling2D) as RESIZE_NEAREST_NEIGHBOR (Keras 3's form becomes TILE, "
                         "which TFLM lacks)")
            return ResizeNearest(cfg["size"], name=layer.name)
        return type(layer).from_config(cfg)

    try:
        rewritten = k.models.clone_model(model, clone_function=clone)
        rewritten.set_weights(model.get_weights())
        same = all(np.allclose(np.asarray(a), np.asarray(b), atol=1e-5, rtol=1e-4) for a, b in
                   zip(_as_list(model(probe, training=False)), _as_list(rewritten(probe, training=False)),
                       strict=True))
    except Exception:  # a model clone_model cannot rebuild (nested or subclassed): convert it as it is
        return model, ()
    return (rewritten, tuple(notes)) if same else (model, ())


def _as_list(x: Any) -> list[Any]:
    return list(x) if isinstance(x, list | tuple) else [x]


def _layer_hint(message: str, model: Any) -> str:
    """Name the user's layer the converter's message points at (its op locations carry the layer names)."""
    types = {layer.name: type(layer).__name__ for layer in getattr(model, "layers", [])}
    hits = [n for n in types if re.search(rf"(^|[/\"'\s(]){re.escape(n)}([/\"'\s)]|$)", message)]
    if hits:
        return f"the failing layer is '{hits[-1]}' ({types[hits[-1]]}): replace it or drop it"
    return "replace the layers TFLite has no int8 kernel for"


def _save_traced(tf: Any, model: Any, serve: Any, folder: Path) -> None:
    """The serving function and the variables it reads, as the SavedModel the child converts.

    The module tracks the model's variables, not the model: with the Keras model tracked, tf_keras also
    traces and saves every layer's own call functions, which the converter never reads and the child then
    loads back (a QAT MobileNetV3-small: 62 s to save and 78 s to convert, against 7 s and 23 s; the
    ``.tflite`` bytes are the same). A function that captures more than the variables (a lookup table) is
    saved with the model tracked, as before. A QAT Conv2DTranspose, whose Keras object tf_keras cannot save,
    now saves this way too instead of through the frozen GraphDef: same ops, quantization and outputs, with
    the SavedModel's tensor names and signature like every other model.
    """
    tracked = [("model_variables", list(model.variables)), ("model", model)]
    module = tf.Module()
    module.serve = serve
    for attr, value in tracked:
        setattr(module, attr, value)
        try:
            tf.saved_model.save(module, str(folder), signatures={"serving_default": serve})
            return
        except Exception:
            continue
    # A function that cannot be saved either way can still be frozen, variables to constants, into a GraphDef.
    _save_frozen(tf, serve.get_concrete_function(), folder)


_FROZEN = "frozen.pb"


def _save_frozen(tf: Any, concrete: Any, folder: Path) -> None:
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    frozen = convert_variables_to_constants_v2(concrete)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / _FROZEN).write_bytes(frozen.graph.as_graph_def().SerializeToString())
    names = [frozen.inputs[0].name, *[o.name for o in frozen.outputs]]
    (folder / "io.txt").write_text("\n".join(names))


def _load_concrete(tf: Any, saved: str) -> tuple[Any, Any]:
    """The traced function in the child: from the SavedModel, or from the frozen GraphDef."""
    folder = Path(saved)
    if not (folder / _FROZEN).is_file():
        loaded = tf.saved_model.load(saved)
        return loaded.signatures["serving_default"], loaded
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString((folder / _FROZEN).read_bytes())
    inp, *outs = (folder / "io.txt").read_text().splitlines()
    wrapped = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(graph_def, name=""), [])
    fn = wrapped.prune(wrapped.graph.get_tensor_by_name(inp), [wrapped.graph.get_tensor_by_name(o) for o in outs])
    return fn, None


def _child(saved: str, calib_path: str, out_path: str) -> None:
    """In the child: convert the traced SavedModel; a Python error becomes one tagged line on stderr."""
    error = _convert_saved(saved, calib_path, out_path)
    if error is not None:
        print(_ERROR_TAG + error, file=sys.stderr)
        raise SystemExit(3)


def _serve() -> None:
    """The kept converter child: one conversion per line on stdin, each answered by one tagged line."""
    for line in sys.stdin:
        saved, calib_path, out_path = line.rstrip("\n").split("\t")
        error = _convert_saved(saved, calib_path, out_path)
        print(_DONE_TAG + (_ERROR_TAG + error if error is not None else ""), flush=True)


def _convert_saved(saved: str, calib_path: str, out_path: str) -> str | None:
    """Convert the traced SavedModel to ``out_path``; the line that says why when the converter refuses."""
    from .tfenv import native_stderr_silenced, tensorflow

    tf = tensorflow()
    calib = np.load(calib_path)
    try:
        concrete, trackable = _load_concrete(tf, saved)
        converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], trackable)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([x[None, ...]] for x in calib)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        with native_stderr_silenced():
            data = converter.convert()
    except Exception as e:  # ConverterError and friends carry long MLIR dumps: keep the line that says why
        text = str(e)
        first = next((ln for ln in text.splitlines() if "error" in ln.lower()), first_line(text))
        return " ".join(first.split())
    Path(out_path).write_bytes(data)
    return None
