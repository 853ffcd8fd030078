"""tinyflow search: real Optuna studies of real Keras candidates, converted and planned for a real board.

Kept small (a few trials, two epochs, tiny data) so the file stays around three minutes: the digits search
through the Python API, a keyword-spotting-like search through the CLI, and the distributed path on a
real PostgreSQL server with two worker processes, one of them killed mid-trial.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

import tinyflow
from tinyflow.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
BOARD = "esp32s3"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT), TINYFLOW_DEBUG="1")


def tinyflow_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tinyflow", *args], capture_output=True, text=True, env=_env(),
                          timeout=timeout, cwd=ROOT)


def planned_arena(path: Path) -> int:
    """What `tinyflow plan --board B FILE` reports as the arena (the smallest that builds)."""
    proc = tinyflow_cli("plan", "--board", BOARD, str(path), "--json", timeout=120)
    assert proc.returncode in (0, 1), proc.stderr[-400:]
    return json.loads(proc.stdout)["arena"]["min_bytes"]


def kws_arrays(n: int = 640, frames: int = 16, coeffs: int = 10, classes: int = 4, seed: int = 0) -> dict:
    """Keyword-spotting-like 2-D features: each class is a formant-like track over MFCC x time, shifted in
    time and buried in noise (class-dependent patterns a small DS-CNN learns in a couple of epochs)."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames)[:, None]
    c = np.arange(coeffs)[None, :]
    templates = []
    for k in range(classes):
        centre = 1.5 + k * 2 + (k % 2) * 3 * t / frames  # rising or flat tracks
        templates.append(np.exp(-((c - centre) ** 2) / 1.5) * np.exp(-((t - frames / 2) ** 2) / (frames * 2)))
    y = rng.integers(0, classes, size=n)
    shift = rng.integers(-2, 3, size=n)
    x = np.stack([np.roll(templates[k], s, axis=0) for k, s in zip(y, shift, strict=True)]) * 2.0
    x = (x + rng.normal(0, 0.35, size=x.shape)).astype(np.float32)[..., None]
    cut = int(0.75 * n)
    return {"x_train": x[:cut], "y_train": y[:cut], "x_test": x[cut:], "y_test": y[cut:],
            "labels": np.array(["yes", "no", "up", "down"])}


def check_front(trials: list[dict], front: list[dict]) -> None:
    """Pairwise: no front member dominates another; and every feasible trained trial off the front is
    dominated by a member (accuracy up, latency and arena down)."""
    def dominates(a: dict, b: dict) -> bool:
        pa = (-a["accuracy"], a["latency_us"], a["arena_bytes"])
        pb = (-b["accuracy"], b["latency_us"], b["arena_bytes"])
        return all(x <= y for x, y in zip(pa, pb, strict=True)) and pa != pb

    assert front
    for a in front:
        assert a["feasible"] and a["trained"] and a["state"] == "COMPLETE"
        for b in front:
            assert not dominates(a, b), (a["number"], b["number"])
    numbers = {r["number"] for r in front}
    for r in trials:
        if r["state"] == "COMPLETE" and r["feasible"] and r["trained"] and r["number"] not in numbers:
            assert any(dominates(f, r) for f in front), r["number"]


def check_rejections(trials: list[dict]) -> tuple[list[dict], list[dict]]:
    rejected = [r for r in trials if r["state"] == "COMPLETE" and r["feasible"] is False and not r["trained"]]
    trained = [r for r in trials if r["trained"]]
    assert rejected, "the budget should make some candidates infeasible"
    assert trained
    for r in rejected:
        # Never trained: no epoch, no training step, no training phase; its reason names the broken limit.
        assert r["epochs"] == 0 and r["training_steps"] == 0 and r["accuracy"] is None
        assert "train" not in r["seconds"] and "--max-arena" in r["reason"]
        assert r["pre_training"]["arena_bytes"] == r["arena_bytes"]
    for r in trained:
        assert r["epochs"] >= 1 and r["training_steps"] >= r["epochs"]
        # The untrained model's plan is the trained model's: the reason a rejection before training is sound.
        assert r["pre_training"]["arena_bytes"] == r["arena_bytes"]
        assert r["pre_training"]["flash_bytes"] == r["flash_bytes"]
    return rejected, trained


def check_arenas_against_plan(trials: list[dict]) -> None:
    for r in trials:
        if r["artifacts"] is None:
            continue
        folder = Path(r["artifacts"])
        path = folder / ("model_int8.tflite" if r["trained"] else "untrained_int8.tflite")
        assert planned_arena(path) == r["arena_bytes"], r["number"]


@pytest.fixture(scope="module", autouse=True)
def one_converter_child():
    """The in-process searches share one converter child, as one long search would."""
    from tinyflow.model import kept_converter

    with kept_converter():
        yield


# --- digits, through the Python API -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_search(tmp_path_factory):
    from tinyflow.examples import digits_arrays

    folder = tmp_path_factory.mktemp("digits-search")
    a = digits_arrays()
    data = folder / "digits.npz"
    np.savez(data, x_train=a["x_train"][:700], y_train=a["y_train"][:700], x_test=a["x_test"][:150],
             y_test=a["y_test"][:150])
    options = tinyflow.SearchOptions(board=BOARD, space="ds_cnn", trials=4, out=str(folder / "search"),
                                     max_arena=9000, epochs=2, patience=1, startup_trials=5, seed=0,
                                     calibration_samples=64, learning_rate=3e-3)
    first = tinyflow.search(data, options)
    # What the first run wrote (the second replaces the files); its best model checked while it is there.
    written = {name: json.loads((first.out_dir / name).read_text()) for name in ("trials.json", "pareto.json")}
    written["best arena"] = planned_arena(first.best_tflite) if first.best_tflite else None
    second = tinyflow.search(data, dataclasses.replace(options, trials=1))
    return first, written, second


def test_digits_search_finds_feasible_models_and_never_trains_the_infeasible(digits_search):
    first, written, _ = digits_search
    trials = written["trials.json"]
    assert len(trials) == 4 and first.new_trials == 4
    for r in trials:
        assert {"number", "params", "feasible", "trained", "accuracy", "arena_bytes", "flash_bytes", "latency_us",
                "reason"} <= set(r)
    rejected, _ = check_rejections(trials)
    assert first.counts["rejected_before_training"] == len(rejected)
    assert first.best is not None and first.best["arena_bytes"] <= 9000 and first.best["accuracy"] > 0.2
    assert all(r["arena_bytes"] <= 9000 for r in first.feasible)


def test_every_reported_arena_is_what_tinyflow_plan_reports(digits_search):
    first, written, second = digits_search
    check_arenas_against_plan(list(second.trials))
    assert written["best arena"] == first.best["arena_bytes"]
    assert planned_arena(second.best_tflite) == second.best["arena_bytes"]
    assert json.loads((second.out_dir / "best" / "trial.json").read_text())["number"] == second.best["number"]
    assert second.best_keras.is_file() and second.best_keras.suffix == ".keras"


def test_the_pareto_set_is_non_dominated(digits_search):
    first, written, second = digits_search
    check_front(written["trials.json"], written["pareto.json"])
    assert [r["number"] for r in written["pareto.json"]] == [r["number"] for r in first.pareto]
    front = json.loads((second.out_dir / "pareto.json").read_text())
    check_front(list(second.trials), front)
    assert second.best["number"] == max(front, key=lambda r: r["accuracy"])["number"]


def test_a_second_search_on_the_same_storage_resumes_the_study(digits_search):
    first, written, second = digits_search
    trials = written["trials.json"]
    assert second.storage == first.storage and second.new_trials == 1
    assert len(second.trials) == len(trials) + 1
    kept = {r["number"]: r for r in second.trials}
    for r in trials:  # the earlier trials are kept as they were
        assert kept[r["number"]]["params"] == r["params"]
        assert kept[r["number"]]["accuracy"] == r["accuracy"]
        assert kept[r["number"]]["arena_bytes"] == r["arena_bytes"]
    assert sorted(kept) == list(range(5))


def test_the_report_draws_the_front_the_budget_and_the_history(digits_search, tmp_path):
    _, _, second = digits_search
    html = second.report_html.read_text()
    assert 'id="pareto-chart"' in html and 'class="budget arena-budget"' in html
    with_figures = [r for r in second.trials if r["arena_bytes"] is not None]
    assert html.count('<circle class="point') == len(with_figures)
    assert html.count('class="point front-point"') == len(second.pareto)
    assert 'id="best-summary"' in html and "accuracy float → int8 → device" in html
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (.ci/run installs Debian's chromium)")
    proc = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", second.report_html.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-400:]
    dom = proc.stdout
    assert dom.count('<circle class="point') == len(with_figures) and "<script" not in dom
    assert all(f"<td>{r['number']}</td>" in dom for r in second.trials)


# --- a keyword-spotting-like task ------------------------------------------------------------------------


def test_kws_search_measures_on_the_simulated_board_and_deploys_the_best(tmp_path):
    data = tmp_path / "kws.npz"
    np.savez(data, **kws_arrays())
    result = tinyflow.search(data, tinyflow.SearchOptions(
        board=BOARD, space="ds_cnn", trials=5, out=str(tmp_path / "kws"), max_arena=9000, epochs=2, patience=1,
        startup_trials=5, seed=3, calibration_samples=64, port="sim", runs=5, deploy_best=True))
    out = result.out_dir
    trials = json.loads((out / "trials.json").read_text())
    front = json.loads((out / "pareto.json").read_text())
    rejected, _ = check_rejections(trials)
    check_front(trials, front)
    check_arenas_against_plan([r for r in trials if r["trained"]] + rejected[:1])
    best = json.loads((out / "best" / "trial.json").read_text())
    assert planned_arena(out / "best" / "model_int8.tflite") == best["arena_bytes"] <= 9000
    assert best["accuracy"] > 0.4  # 4 classes: chance is 0.25
    summary = json.loads((out / "search.json").read_text())
    assert summary["counts"]["rejected_before_training"] == len(rejected)
    # --port sim: each feasible trained candidate's latency is the simulated board's, and labelled so.
    assert {r["latency_source"] for r in trials if r["trained"] and r["feasible"]} == {"simulated"}
    assert all(r["latency_source"] == "estimate" for r in rejected)
    assert summary["latency_objective"].startswith("simulated")
    # --deploy-best: the whole deploy of the chosen model, whose plan is the search's figure.
    d = result.deploy
    assert d is not None and d.out_dir == out / "deploy" and (d.out_dir / "report.html").is_file()
    assert d.report["memory"]["arena"]["min_bytes"] == best["arena_bytes"]
    assert d.report["device"]["kind"] == "simulated"
    assert str(d.out_dir) in result.report_html.read_text()


# --- spaces: bad input is one line -------------------------------------------------------------------------


def test_a_user_space_is_loaded_and_checked_with_one_line_errors(tmp_path):
    from optuna.trial import FixedTrial

    from tinyflow.search import load_space

    with pytest.raises(InputError, match="search space file not found"):
        load_space(str(tmp_path / "missing.py") + ":build")
    (tmp_path / "space.py").write_text("def make(trial, input_shape, num_classes):\n    return 'not a model'\n")
    with pytest.raises(InputError, match=r"has no function 'build' \(it defines make\)"):
        load_space(str(tmp_path / "space.py"))
    space = load_space(f"{tmp_path / 'space.py'}:make")
    with pytest.raises(InputError, match="returned str, not a Keras model"):
        space.build(FixedTrial({}), (8, 8, 1), 10)
    (tmp_path / "broken.py").write_text("import no_such_module_here\n")
    with pytest.raises(InputError, match="importing the search space failed"):
        load_space(f"{tmp_path / 'broken.py'}:build")
    with pytest.raises(InputError, match="no such family"):
        load_space("resnet")
    proc = tinyflow_cli("search", "--data", str(tmp_path / "none.npz"), "--space", f"{tmp_path / 'space.py'}:nope",
                        "--out", str(tmp_path / "o"))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "has no function 'nope'" in lines[0]


def test_the_kept_converter_survives_its_child_dying(tmp_path):
    from tinyflow.model import convert, keras3

    keras = keras3()
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, activation="softmax")])
    calib = np.random.default_rng(0).normal(size=(16, 6)).astype(np.float32)
    with convert.kept_converter():
        a, _ = convert.convert_int8(model, calib, 16)
        child = convert._kept.proc
        child.kill()  # as if TF's converter had crashed between two conversions
        child.wait()
        b, _ = convert.convert_int8(model, calib, 16)
        assert convert._kept.proc is not child
    assert a == b


# --- distributed: two workers on one PostgreSQL study -------------------------------------------------------


def _pg_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL server on a free local port (PostgreSQL refuses to run as root: then as the
    'postgres' or 'nobody' user, in a folder that user owns)."""
    initdb, pg_ctl = _pg_binary("initdb"), _pg_binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL's initdb/pg_ctl are missing (.ci/run installs Debian's postgresql)")
        pytest.skip("PostgreSQL is not installed (.ci/run installs Debian's postgresql)")
    prefix: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="tinyflow-pg-"))
    if os.getuid() == 0:
        user = next((u for u in ("postgres", "nobody") if _has_user(u)), None)
        runuser = shutil.which("runuser")
        assert user and runuser, "running as root without a 'postgres'/'nobody' user or runuser to run PostgreSQL as"
        entry = pwd.getpwnam(user)
        os.chown(folder, entry.pw_uid, entry.pw_gid)
        os.chmod(folder, 0o700)
        prefix = [runuser, "-u", user, "--"]
    data, port = folder / "data", _free_port()
    run = lambda *cmd: subprocess.run([*prefix, *cmd], capture_output=True, text=True, timeout=120)  # noqa: E731
    r = run(initdb, "-D", str(data), "-U", "tinyflow", "--auth=trust", "-E", "UTF8")
    assert r.returncode == 0, r.stderr[-500:]
    r = run(pg_ctl, "-D", str(data), "-l", str(folder / "log"), "-w", "-o",
            f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c max_connections=60", "start")
    assert r.returncode == 0, (r.stderr + r.stdout)[-500:]
    try:
        yield f"postgresql://tinyflow@127.0.0.1:{port}/postgres"
    finally:
        run(pg_ctl, "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(folder, ignore_errors=True)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def _worker_args(data: Path, out: Path, url: str, trials: int, *extra: str) -> list[str]:
    return ["search", "--board", BOARD, "--data", str(data), "--space", "dense", "--trials", str(trials), "--out",
            str(out), "--storage", url, "--study", "shared", "--max-arena", "2000", "--train-epochs", "1",
            "--startup-trials", "20", "--calibration-samples", "32", "--heartbeat", "2", *extra]


def test_two_workers_share_one_postgresql_study_and_survive_a_killed_one(postgres, tmp_path):
    import optuna

    rng = np.random.default_rng(0)
    x = rng.normal(size=(240, 12)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64) + 2 * (x[:, 2] > 0)
    data = tmp_path / "tiny.npz"
    np.savez(data, x_train=x[:180], y_train=y[:180], x_test=x[180:], y_test=y[180:])

    # Two worker processes (--workers 2) on one study; nothing but the storage connects them.
    proc = tinyflow_cli(*_worker_args(data, tmp_path / "w0", postgres, 2, "--workers", "2"))
    assert proc.returncode in (0, 1), proc.stderr[-800:]
    # tinyflow takes the bare URL (it names the psycopg2 driver itself); Optuna here needs it named.
    study = optuna.load_study(study_name="shared", storage=postgres.replace("postgresql://", "postgresql+psycopg2://"))
    trials = study.get_trials()
    assert len(trials) == 2 and sorted(t.number for t in trials) == [0, 1]
    workers = {t.user_attrs["tinyflow"]["worker"]["pid"] for t in trials}
    assert len(workers) == 2 and os.getpid() not in workers

    # A worker killed mid-trial (its whole process group: as if its host were gone) leaves a RUNNING trial...
    victim = subprocess.Popen([sys.executable, "-m", "tinyflow", *_worker_args(data, tmp_path / "w1", postgres, 3)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(), cwd=ROOT,
                              start_new_session=True)
    deadline = time.monotonic() + 300
    running = None
    while time.monotonic() < deadline and running is None:
        running = next((t.number for t in study.get_trials(states=(optuna.trial.TrialState.RUNNING,))), None)
        time.sleep(0.2)
    time.sleep(1.0)  # its heartbeat thread has beaten (a trial that never beat is not known to be stale)
    assert running is not None, "the worker never started a trial"
    assert next(t for t in study.get_trials() if t.number == running).state.name == "RUNNING"
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    # ...and the study stays usable: another worker (another output folder, as on another host) completes
    # its trials, lists its predecessors' and reports the killed one.
    proc = tinyflow_cli(*_worker_args(data, tmp_path / "w2", postgres, 2))
    assert proc.returncode in (0, 1), proc.stderr[-800:]
    assert "tinyflow search" in proc.stdout and "report:" in proc.stdout
    listed = {r["number"]: r for r in json.loads((tmp_path / "w2" / "trials.json").read_text())}
    assert {0, 1, running} <= set(listed) and len(listed) == running + 3
    assert listed[running]["reason"]
    finished = [r for r in listed.values() if r["number"] > running and r["state"] in ("COMPLETE", "PRUNED")]
    assert len(finished) == 2
    dirs = {r["worker"]["dir"] for r in listed.values() if r["worker"]}
    assert dirs == {str(tmp_path / "w0"), str(tmp_path / "w1"), str(tmp_path / "w2")}
    # Its heartbeat stopped: Optuna failed the trial when this worker started its second one.
    assert listed[running]["state"] == "FAIL"  # the heartbeat let Optuna fail it when the next trial started


def test_a_crash_of_the_kept_converter_child_is_the_same_one_line(monkeypatch):
    from tinyflow.model import convert, tf_keras

    # The kept child dies the way TF's converter does on a GRU: by a signal, mid-conversion, without a word.
    monkeypatch.setattr(convert, "_SERVE", "import os, signal, sys; sys.stdin.readline(); "
                                           "os.kill(os.getpid(), signal.SIGSEGV)")
    kept = convert._KeptConverter()
    monkeypatch.setattr(convert, "_kept", kept)
    k = tf_keras()
    i = k.Input((8, 3))
    model = k.Model(i, k.layers.Dense(2)(k.layers.GRU(4, unroll=True)(i)))
    try:
        with pytest.raises(InputError) as e:
            convert.to_int8_tflite(model, np.zeros((4, 8, 3), np.float32), source="gru.h5")
    finally:
        kept.close()
    msg = str(e.value)
    assert msg.startswith("gru.h5: TF's converter crashed (signal 11)") and "GRU" in msg and "\n" not in msg
