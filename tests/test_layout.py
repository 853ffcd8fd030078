"""The package layout is the pipeline: no stage imports one above it, and stages meet only at their public faces."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "tinyflow"

# Lower rank = nearer the bottom. A module may import its own rank or below, never above.
SHARED = {"errors", "paths", "boards", "outdir", "progress", "protocol", "stagecache"}
STAGES = ["graph", "model", "rewrite", "plan", "firmware", "device", "report"]
# search composes model, plan, device, report (and pipeline's deploy for --deploy-best): a composition module.
COMPOSE = {"pipeline", "cli", "commands", "examples", "__main__", "search"}


def rank(top: str) -> int:
    if top in SHARED:
        return 0
    if top in STAGES:
        return 1 + STAGES.index(top)
    if top in COMPOSE:
        return 1 + len(STAGES)
    raise AssertionError(f"tinyflow/{top}: a new top-level module or folder; give it a place in this test's table")


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def unit(path: Path) -> str:
    """The stage or shared module a file belongs to: its folder under tinyflow/, or its own name."""
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def imported(path: Path) -> list[tuple[int, list[str]]]:
    """(line, target as a dotted path under tinyflow) for every tinyflow import in a file, lazy ones included."""
    rel = path.relative_to(PACKAGE).with_suffix("")
    here = list(rel.parts[:-1])  # the package a relative import starts from (for __init__ too)
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)] if node.level > 1 else here
                target = base + (node.module.split(".") if node.module else [])
                if not target:  # `from . import x`: x is a module, or a name of tinyflow/__init__
                    target = [a.name for a in node.names][:1]
                out.append((node.lineno, target))
            elif node.module and node.module.split(".")[0] == "tinyflow":
                out.append((node.lineno, node.module.split(".")[1:] or [node.names[0].name]))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name.split(".")[1:]) for a in node.names if a.name.startswith("tinyflow.")]
    return out


def test_the_top_level_is_small_and_every_stage_is_one_folder():
    top = [p.stem for p in PACKAGE.glob("*.py")]
    assert len(top) <= 12, top
    for stage in STAGES:
        assert (PACKAGE / stage / "__init__.py").is_file()
        doc = ast.get_docstring(ast.parse((PACKAGE / stage / "__init__.py").read_text()))
        assert doc and "returns" in doc.lower(), f"tinyflow/{stage}/__init__.py must say what the stage takes/returns"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_a_stage_above_it(path: Path):
    me = unit(path)
    if me == "__init__":
        return  # the package's lazy public API (tinyflow.deploy, ...) sits above everything by design
    for line, target in imported(path):
        if target[0] in ("__version__", "__init__"):
            continue
        assert rank(target[0]) <= rank(me), (f"{path.relative_to(PACKAGE)}:{line} imports tinyflow."
                                             f"{'.'.join(target)}, a stage above it")


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_stages_import_each_other_through_the_public_face(path: Path):
    me = unit(path)
    for line, target in imported(path):
        if target[0] in STAGES and target[0] != me:
            assert len(target) == 1, (f"{path.relative_to(PACKAGE)}:{line} imports tinyflow.{'.'.join(target)}: "
                                      f"import from tinyflow.{target[0]} (its __init__) instead")


@pytest.mark.parametrize("stage", STAGES)
def test_no_public_name_hides_a_module_of_its_stage(stage: str):
    # `from .flash import flash` in device/__init__ would make tinyflow.device.flash the function, and
    # monkeypatch("tinyflow.device.flash.sys") or `import tinyflow.device.flash as m` would then break.
    import importlib

    pkg = importlib.import_module(f"tinyflow.{stage}")
    modules = {p.stem for p in (PACKAGE / stage).glob("*.py")}
    assert not modules & set(pkg.__all__), f"tinyflow.{stage} exports names that are also its module names"
