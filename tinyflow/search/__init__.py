"""Hardware-aware model search: the most accurate member of a model family that fits the board's budget.

Takes a ``DATA.npz``, a board, a search space (a built-in family or ``FILE.py:FUNCTION``) and a budget
(``SearchOptions``); returns a ``SearchResult`` (every trial, the Pareto front of the feasible ones, the
chosen model's files and report). Composes the model, plan, device and report stages; Optuna's study in a
shared storage (SQLite by default, PostgreSQL for several hosts) carries the search between workers and runs.
"""

import sys
import types

from .run import SearchOptions, SearchResult, search, worker_main
from .spaces import SPACES, Knob, Space, load_space

__all__ = ["SPACES", "Knob", "SearchOptions", "SearchResult", "Space", "load_space", "search", "worker_main"]


class _CallablePackage(types.ModuleType):
    """``tinyflow.search(...)`` is the API, and ``tinyflow.search`` is also this package: Python binds an
    imported subpackage to its parent's attribute, so whichever came first would win. Calling the package
    runs ``search``, so both hold."""

    def __call__(self, *args, **kwargs):
        return search(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
