"""What a search leaves in its folder: trials.json (every trial of the study), pareto.json (the
non-dominated feasible trials), best/ (the chosen model: its int8 .tflite and Keras file) and report.html."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from ..outdir import OutputDir, write_text
from .trial import KERAS_NAME, RECORD, SUMMARY_NAME, TFLITE_NAME, latency_for_search

_RUNNING = ("running: its worker is busy with it, or died (a dead worker's trial turns FAIL once its heartbeat "
            "grace period has passed)")


def record_of(trial: Any) -> dict[str, Any]:
    """One trial of the study as trials.json lists it, whatever its state (a dead worker's stays RUNNING)."""
    rec = dict(trial.user_attrs.get(RECORD) or {})
    state = trial.state.name
    out: dict[str, Any] = {"number": trial.number, "state": state, "params": dict(trial.params),
                           "feasible": rec.get("feasible"), "trained": bool(rec.get("trained", False)),
                           "accuracy": rec.get("accuracy"), "arena_bytes": rec.get("arena_bytes"),
                           "flash_bytes": rec.get("flash_bytes"), "latency_us": rec.get("latency_us"),
                           "reason": rec.get("reason")}
    for key in ("latency_source", "firmware_arena_bytes", "macs", "param_count", "epochs", "training_steps",
                "fine_tune_epochs",
                "pruned", "pre_training", "artifacts", "worker", "seconds"):
        out[key] = rec.get(key)
    out["worker"] = out["worker"] or trial.user_attrs.get("worker")
    out["val_accuracy"] = trial.user_attrs.get("val_accuracy", [])
    if state == "RUNNING":
        out["reason"] = _RUNNING
    elif state == "FAIL" and not out["reason"]:
        out["reason"] = trial.system_attrs.get("fail_reason") or "failed (its worker died or raised an error)"
    elif state == "WAITING":
        out["reason"] = "waiting (enqueued, not started)"
    if trial.datetime_start is not None:
        out["started"] = trial.datetime_start.isoformat(timespec="seconds")
    return out


def candidates(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Trials the front is made of: complete, trained, evaluated and within the whole budget."""
    return [r for r in records if r["state"] == "COMPLETE" and r["feasible"] and r["trained"]
            and r["accuracy"] is not None]


def dominates(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """``a`` is at least as good as ``b`` in accuracy, latency and arena, and better in one."""
    pa = (-a["accuracy"], latency_for_search(a), a["arena_bytes"])
    pb = (-b["accuracy"], latency_for_search(b), b["arena_bytes"])
    return all(x <= y for x, y in zip(pa, pb, strict=True)) and pa != pb


def pareto(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    pool = candidates(records)
    return [r for r in pool if not any(dominates(o, r) for o in pool if o is not r)]


def choose(front: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The most accurate model that fits (the point of the search); ties go to the faster, then smaller."""
    if not front:
        return None
    return min(front, key=lambda r: (-r["accuracy"], latency_for_search(r), r["arena_bytes"], r["number"]))


def counts(records: list[dict[str, Any]]) -> dict[str, int]:
    return {"trials": len(records), "complete": sum(r["state"] == "COMPLETE" for r in records),
            "feasible": len(candidates(records)),
            "rejected_before_training": sum(r["state"] == "COMPLETE" and r["feasible"] is False and not r["trained"]
                                            for r in records),
            "infeasible_after_training": sum(r["state"] == "COMPLETE" and r["feasible"] is False and r["trained"]
                                             for r in records),
            "pruned": sum(r["state"] == "PRUNED" for r in records),
            "failed": sum(r["state"] == "FAIL" for r in records),
            "running": sum(r["state"] == "RUNNING" for r in records)}


def write_json(path: Path, doc: Any) -> None:
    # allow_nan=False: NaN is not JSON; a non-finite figure is a bug to see, not output to parse.
    write_text(path, json.dumps(doc, indent=2, allow_nan=False) + "\n")


def write_best(out_dir: Path, best: dict[str, Any] | None, force: bool) -> tuple[Path | None, Path | None, str | None]:
    """Copy the chosen trial's files into ``out_dir/best`` (all or nothing). A trial trained by a worker
    with another output folder (another host) has its files there: the note says where."""
    if best is None:
        return None, None, "no feasible trained model yet"
    src = Path(best["artifacts"]) if best.get("artifacts") else None
    if src is None or not (src / TFLITE_NAME).is_file():
        where = (best.get("worker") or {})
        return None, None, (f"trial {best['number']}'s model was trained by a worker on {where.get('host', '?')} "
                            f"with output folder {where.get('dir', '?')}: its files are there")
    with OutputDir(out_dir / "best", force) as out:
        for name in (TFLITE_NAME, KERAS_NAME, SUMMARY_NAME):
            if (src / name).is_file():
                shutil.copyfile(src / name, out.path / name)
        write_json(out.path / "trial.json", best)
        path = out.publish()
    return path / TFLITE_NAME, path / KERAS_NAME, None


def summary_report(best_dir: Path | None) -> dict[str, Any] | None:
    """The chosen model's deploy-style report (board, model, accuracy, memory) that its trial wrote."""
    if best_dir is None or not (best_dir / SUMMARY_NAME).is_file():
        return None
    return json.loads((best_dir / SUMMARY_NAME).read_text())
