"""tinyflow: take a Keras model to a microcontroller and prove it works there."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["DeployOptions", "OptimizeOptions", "__version__", "deploy", "find_board", "optimize_model"]


def __getattr__(name: str):
    # The public API is imported lazily so that `import tinyflow` stays cheap (no TensorFlow).
    if name in ("deploy", "optimize_model", "DeployOptions"):
        from . import pipeline

        return getattr(pipeline, name)
    if name == "OptimizeOptions":
        from .model import OptimizeOptions

        return OptimizeOptions
    if name == "find_board":
        from .boards import find_board

        return find_board
    raise AttributeError(name)
