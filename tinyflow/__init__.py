"""tinyflow: take a Keras model to a microcontroller and prove it works there."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["DeployOptions", "OptimizeOptions", "SearchOptions", "__version__", "deploy", "find_board",
           "optimize_model", "search"]


def __getattr__(name: str):
    # The public API is imported lazily so that `import tinyflow` stays cheap (no TensorFlow).
    if name in ("deploy", "optimize_model", "DeployOptions"):
        from . import pipeline

        return getattr(pipeline, name)
    if name in ("search", "SearchOptions"):
        import importlib

        # import_module, not `from . import search`: that asks this __getattr__ for "search" again. The
        # package is callable: tinyflow.search(...) runs search.search.
        search_package = importlib.import_module(f"{__name__}.search")
        return search_package if name == "search" else search_package.SearchOptions
    if name == "OptimizeOptions":
        from .model import OptimizeOptions

        return OptimizeOptions
    if name == "find_board":
        from .boards import find_board

        return find_board
    raise AttributeError(name)
