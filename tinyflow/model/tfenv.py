"""Imports TensorFlow and tf_keras on first use, quietly: the commands that do not need them stay fast."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def _quiet_env() -> None:
    # Before the first TF import: hide C++ info/warning logs and the CUDA probe on machines without a GPU.
    # A user's own settings win.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")


@contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Hide what C++ code (absl, the TFLite converter) prints to file descriptor 2 meanwhile.

    TF prints absl and converter chatter to fd 2 whatever TF_CPP_MIN_LOG_LEVEL says. If the block
    fails, the hidden text is replayed so nothing that explains the failure is lost.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        failed = True
        try:
            yield
            failed = False
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if failed:
                sink.seek(0)
                sys.stderr.write(sink.read().decode(errors="replace")[-4000:])


_imported = False


def tensorflow() -> Any:
    global _imported
    _quiet_env()
    if not _imported:
        with native_stderr_silenced():
            import tensorflow as tf

            tf.get_logger().setLevel("ERROR")
            tf.constant(0.0) + 1.0  # first op: oneDNN announces itself here
        _imported = True
    import tensorflow as tf

    return tf


def tf_keras() -> Any:
    tensorflow()
    import tf_keras as tfk

    return tfk


def keras3() -> Any:
    tensorflow()
    import keras

    return keras


def tfmot() -> Any:
    tensorflow()
    with native_stderr_silenced():
        import tensorflow_model_optimization as mot

    return mot
