"""Output folders and files under hostile conditions: a re-run never takes the user's files, a planted link
is never followed, a bad --out is one line, a failed rename or a signal leaves no debris behind."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tinyflow.cli import main
from tinyflow.outdir import MARKER, read_marker

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def mlp(corpus_model, tmp_path) -> Path:
    path = tmp_path / "mlp.tflite"
    path.write_bytes(corpus_model("mlp"))
    return path


def _generate(model: Path, out: Path, *extra: str) -> list[str]:
    return ["generate", str(model), "--board", "esp32s3", "--out", str(out), *extra]


def _error(capsys, argv: list[str], *needles: str) -> str:
    assert main(argv) == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("tinyflow: error:"), lines
    assert not any("Traceback" in ln for ln in lines), lines
    for n in needles:
        assert n in lines[-1], (n, lines[-1])
    return lines[-1]


def _siblings(out: Path) -> list[str]:
    """Staging and trash folders left next to ``out``."""
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _a_source(out: Path) -> Path:
    return next(p for p in sorted(out.rglob("*.cc")))


def test_the_marker_lists_every_file_with_its_hash(capsys, tmp_path, mlp):
    import hashlib

    out = tmp_path / "fw"
    assert main(_generate(mlp, out)) == 0
    listed = read_marker(out)
    files = {k: v for k, v in _tree(out).items() if k != MARKER}
    assert listed == {k: hashlib.sha256(v).hexdigest() for k, v in files.items()}
    assert any(k.endswith(".cc") for k in listed)
    assert _siblings(out) == []


def test_a_file_the_user_added_survives_a_rerun(capsys, tmp_path, mlp):
    out = tmp_path / "fw"
    assert main(_generate(mlp, out)) == 0
    (out / "my_notes.txt").write_text("keep me")
    before = _tree(out)
    line = _error(capsys, _generate(mlp, out), str(out), "my_notes.txt", "1 file", "--force")
    assert "added or edited" in line
    assert _tree(out) == before and _siblings(out) == []


def test_a_hand_edit_to_a_generated_source_survives_a_rerun(capsys, tmp_path, mlp):
    out = tmp_path / "fw"
    assert main(_generate(mlp, out)) == 0
    src = _a_source(out)
    src.write_text(src.read_text() + "// my fix\n")
    rel = src.relative_to(out).as_posix()
    _error(capsys, _generate(mlp, out), f"{rel} (edited)", "--force")
    assert src.read_text().endswith("// my fix\n")


def test_what_building_the_project_leaves_does_not_block_a_rerun(capsys, tmp_path, mlp):
    """`pio run` in the generated project writes .pio/, managed_components/, dependencies.lock and
    sdkconfig.<env>: a re-run replaces them without --force (they are rebuilt); a user's file beside them
    still blocks it."""
    out = tmp_path / "fw"
    assert main(_generate(mlp, out)) == 0
    project = out / "platformio"
    (project / ".pio" / "build" / "esp32s3").mkdir(parents=True)
    (project / ".pio" / "build" / "esp32s3" / "firmware.bin").write_bytes(b"\x00" * 64)
    (project / "managed_components" / "espressif__esp-nn").mkdir(parents=True)
    (project / "managed_components" / "espressif__esp-nn" / "CMakeLists.txt").write_text("x")
    (project / "dependencies.lock").write_text("x")
    (project / "sdkconfig.esp32s3").write_text("CONFIG_X=y\n")
    assert main(_generate(mlp, out)) == 0
    assert not (project / ".pio").exists() and (project / "sdkconfig.defaults").is_file()
    (project / "sdkconfig.esp32s3").write_text("CONFIG_X=y\n")
    (project / "my_component.c").write_text("int x;")
    _error(capsys, _generate(mlp, out), "my_component.c", "1 file")


def test_many_changes_are_named_first_few_and_counted(capsys, tmp_path, mlp):
    out = tmp_path / "fw"
    assert main(_generate(mlp, out)) == 0
    for i in range(7):
        (out / f"note{i}.txt").write_text("x")
    line = _error(capsys, _generate(mlp, out), "7 files", "note0.txt", "and 4 more")
    assert "note6.txt" not in line


def test_force_replaces_the_whole_folder(capsys, tmp_path, mlp):
    out = tmp_path / "fw"
    assert main(_generate(mlp, out)) == 0
    generated = _tree(out)
    (out / "my_notes.txt").write_text("mine")
    src = _a_source(out)
    src.write_text("edited")
    assert main(_generate(mlp, out, "--force")) == 0
    assert _tree(out) == generated and _siblings(out) == []
    # Unchanged since this run wrote it: replaced without --force.
    assert main(_generate(mlp, out)) == 0
    assert _tree(out) == generated


def test_a_deleted_generated_file_does_not_block_a_rerun(capsys, tmp_path, mlp):
    out = tmp_path / "fw"
    assert main(_generate(mlp, out)) == 0
    generated = _tree(out)
    _a_source(out).unlink()
    assert main(_generate(mlp, out)) == 0
    assert _tree(out) == generated


@pytest.mark.parametrize("marker", [b"", b"This directory was written by tinyflow; re-running replaces it.\n",
                                    b'{"written_by": "tinyflow", "version": 1, "files": {}}', b"{not json",
                                    b'{"written_by": "tinyflow", "files": {"../../etc/passwd": "00"}}'])
def test_a_marker_that_lists_nothing_makes_the_folder_the_users(capsys, tmp_path, mlp, marker):
    out = tmp_path / "mine"
    out.mkdir()
    (out / MARKER).write_bytes(marker)
    (out / "thesis.tex").write_text("years of work")
    _error(capsys, _generate(mlp, out), "thesis.tex", "did not write", "--force")
    assert (out / "thesis.tex").read_text() == "years of work" and (out / MARKER).read_bytes() == marker


def test_a_marker_linked_to_dev_zero_is_not_read_without_bound(capsys, tmp_path, mlp):
    out = tmp_path / "mine"
    out.mkdir()
    (out / MARKER).symlink_to("/dev/zero")
    (out / "data.csv").write_text("1,2")
    _error(capsys, _generate(mlp, out), "data.csv")
    assert (out / "data.csv").read_text() == "1,2"


def test_a_listed_file_swapped_for_a_link_is_an_edit(capsys, tmp_path, mlp):
    out = tmp_path / "fw"
    assert main(_generate(mlp, out)) == 0
    secret = tmp_path / "secret.txt"
    secret.write_text("s")
    src = _a_source(out)
    src.unlink()
    src.symlink_to(secret)
    _error(capsys, _generate(mlp, out), "(edited)")
    assert secret.read_text() == "s" and src.is_symlink()


@pytest.mark.parametrize("kind", ["dangling link", "link to a folder", "file", "under a file", "under a dangling link"])
def test_a_bad_out_path_is_one_line_and_touches_nothing(capsys, tmp_path, mlp, kind):
    target = tmp_path / "elsewhere"
    if kind == "dangling link":
        out = tmp_path / "out"
        out.symlink_to(tmp_path / "missing")
        needles = ["dangling symbolic link", "missing"]
    elif kind == "link to a folder":
        target.mkdir()
        (target / "keep.txt").write_text("k")
        out = tmp_path / "out"
        out.symlink_to(target)
        needles = ["symbolic link", str(target)]
    elif kind == "file":
        out = tmp_path / "out"
        out.write_text("a file")
        needles = ["is a file, not a folder"]
    elif kind == "under a file":
        (tmp_path / "afile").write_text("a file")
        out = tmp_path / "afile" / "out"
        needles = [str(tmp_path / "afile"), "is a file, not a folder"]
    else:
        (tmp_path / "link").symlink_to(tmp_path / "missing")
        out = tmp_path / "link" / "out"
        needles = [str(tmp_path / "link"), "missing target"]
    before = sorted(p.name for p in tmp_path.rglob("*"))
    for extra in ((), ("--force",)):
        _error(capsys, _generate(mlp, out, *extra), str(out), *needles)
        assert sorted(p.name for p in tmp_path.rglob("*")) == before
    if kind == "link to a folder":
        assert (target / "keep.txt").read_text() == "k"


@pytest.mark.parametrize("where", ["cwd", "parent of cwd", "home"])
def test_force_never_replaces_the_folder_one_works_in(capsys, tmp_path, mlp, monkeypatch, where):
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    (work / "thesis.tex").write_text("years of work")
    if where == "home":
        monkeypatch.setenv("HOME", str(work))
    monkeypatch.chdir(work / "sub" if where != "cwd" else work)
    out = "." if where == "cwd" else ".." if where == "parent of cwd" else str(work)
    _error(capsys, _generate(mlp, Path(out), "--force"), "current or home folder", "inside it")
    assert (work / "thesis.tex").read_text() == "years of work" and (work / "sub").is_dir()


def test_deploy_reuses_its_model_stages_while_the_marker_vouches_for_them(capsys, tmp_path, mlp):
    out = tmp_path / "dep"
    argv = ["deploy", str(mlp), "--board", "sim", "--runs", "3", "--out", str(out)]
    assert main(argv) == 0
    assert json.loads((out / "report.json").read_text())["reused_model_stages"] is False
    assert main(argv) == 0
    assert json.loads((out / "report.json").read_text())["reused_model_stages"] is True
    # A cache entry edited by hand is the user's: refused without --force, and never reused.
    entry = next((out / ".stages").iterdir()) / "report.json"
    entry.write_text(entry.read_text().replace('"model"', '"model" ', 1))
    _error(capsys, argv, f".stages/{entry.parent.name}/report.json (edited)")
    assert main([*argv, "--force"]) == 0
    assert json.loads((out / "report.json").read_text())["reused_model_stages"] is False
    assert _siblings(out) == []


# --- plan --write -------------------------------------------------------------------------------------------


def _plan(model: Path, out: Path, *extra: str) -> list[str]:
    return ["plan", str(model), "--board", "sim", "--write", str(out), "--json", *extra]


def test_plan_write_never_follows_a_planted_temp_link(capsys, tmp_path, mlp):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "new.tflite"
    planted = tmp_path / ".new.tflite.tmp"
    planted.symlink_to(victim)
    assert main(_plan(mlp, out)) == 0
    assert victim.read_text() == "precious" and planted.is_symlink()
    assert out.read_bytes()[4:8] == b"TFL3" and not out.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([".new.tflite.tmp", "mlp.tflite", "new.tflite",
                                                                  "victim.txt"])


def test_plan_write_onto_an_existing_file_or_link_needs_force(capsys, tmp_path, mlp):
    mine = tmp_path / "mine.tflite"
    mine.write_bytes(b"my own model")
    _error(capsys, _plan(mlp, mine), str(mine), "exists", "--force")
    assert mine.read_bytes() == b"my own model"
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    link = tmp_path / "link.tflite"
    link.symlink_to(victim)
    _error(capsys, _plan(mlp, link), "symbolic link", "--force")
    # With --force the link itself is replaced; what it pointed to is not written.
    assert main(_plan(mlp, link, "--force")) == 0
    assert victim.read_text() == "precious" and not link.is_symlink() and link.read_bytes()[4:8] == b"TFL3"
    fifo = tmp_path / "fifo.tflite"
    os.mkfifo(fifo)
    _error(capsys, _plan(mlp, fifo), "a FIFO, socket or device", "--force")
    assert main(_plan(mlp, fifo, "--force")) == 0 and fifo.read_bytes()[4:8] == b"TFL3"  # replaced, not opened
    assert main(_plan(mlp, mine, "--force")) == 0
    assert mine.read_bytes()[4:8] == b"TFL3"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("kind", ["folder", "under a file", "missing folder", "empty name"])
def test_plan_write_to_a_bad_path_is_one_line(capsys, tmp_path, mlp, kind):
    if kind == "empty name":
        _error(capsys, ["plan", str(mlp), "--board", "sim", "--write", ""], "output file name is empty")
        return
    if kind == "folder":
        out = tmp_path / "adir"
        out.mkdir()
        needle = "is a folder"
    elif kind == "under a file":
        (tmp_path / "afile").write_text("x")
        out = tmp_path / "afile" / "m.tflite"
        needle = "is a file, not a folder"
    else:
        out = tmp_path / "nope" / "m.tflite"
        needle = "does not exist"
    _error(capsys, _plan(mlp, out, "--force"), str(out), needle)
    assert not (tmp_path / "nope").exists()


# --- a rename that fails: a busy mount point ----------------------------------------------------------------


def _rename_of(dest: Path, err: int, monkeypatch) -> list[str]:
    """os.rename fails with ``err`` when it moves ``dest`` itself, as the kernel does for a mount point
    (EBUSY) or a folder on another filesystem (EXDEV); a real mount needs root."""
    real = os.rename
    calls: list[str] = []

    def rename(src, dst, *a, **kw):
        if Path(src) == dest:
            calls.append(str(src))
            raise OSError(err, os.strerror(err), str(src))
        return real(src, dst, *a, **kw)

    monkeypatch.setattr(os, "rename", rename)
    return calls


@pytest.mark.parametrize("err", [errno.EBUSY, errno.EXDEV])
def test_a_mount_point_out_is_replaced_in_place_without_debris(capsys, tmp_path, mlp, monkeypatch, err):
    out = tmp_path / "mnt"
    out.mkdir()  # an empty mount point: the first run has the same problem as a re-run
    calls = _rename_of(out, err, monkeypatch)
    assert main(_generate(mlp, out)) == 0
    generated = _tree(out)
    assert read_marker(out) and _siblings(out) == []
    (out / "my_notes.txt").write_text("mine")
    _error(capsys, _generate(mlp, out), "my_notes.txt")
    assert main(_generate(mlp, out, "--force")) == 0
    assert _tree(out) == generated and _siblings(out) == []
    assert main(_generate(mlp, out)) == 0
    assert _tree(out) == generated and _siblings(out) == [] and len(calls) == 3


def test_a_rename_refused_otherwise_is_one_line_and_keeps_the_old_output(capsys, tmp_path, mlp, monkeypatch):
    out = tmp_path / "fw"
    assert main(_generate(mlp, out)) == 0
    generated = _tree(out)
    _rename_of(out, errno.EACCES, monkeypatch)
    _error(capsys, _generate(mlp, out), str(out), "cannot replace it", "Permission denied")
    assert _tree(out) == generated and _siblings(out) == []


# --- signals and what a killed run leaves -------------------------------------------------------------------


def _processes_naming(text: str) -> list[int]:
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if text.encode() in (p / "cmdline").read_bytes():
                    pids.append(int(p.name))
            except OSError:
                continue
    return pids


@pytest.mark.parametrize("signum, code, word", [(signal.SIGTERM, 143, "terminated"), (signal.SIGHUP, 129, "hung up")])
def test_a_signal_mid_deploy_cleans_up(corpus_model, tmp_path, signum, code, word):
    model = tmp_path / "ds_cnn.tflite"
    model.write_bytes(corpus_model("ds_cnn"))
    out = tmp_path / "dep"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # The most timed runs the simulated board takes (1000), of a model that takes milliseconds there: seconds
    # of measuring after the model is written, so the signal lands mid-run.
    proc = subprocess.Popen([sys.executable, "-m", "tinyflow", "deploy", str(model), "--board", "sim", "--runs",
                             "1000", "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=env, cwd=tmp_path)
    try:
        while not _siblings(out) and proc.poll() is None:
            time.sleep(0.01)
        assert proc.poll() is None, proc.stderr.read()
        staging = tmp_path / _siblings(out)[0]
        assert f".staging-{proc.pid}-" in staging.name
        while not (staging / "model_int8.tflite").exists() and proc.poll() is None:
            time.sleep(0.01)  # in the measure stage now: the sim board is running
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = [ln for ln in err.decode().splitlines() if ln.strip()]
    assert proc.returncode == code, lines
    assert lines[-1] == f"tinyflow: {word}" and not any("Traceback" in ln for ln in lines)
    assert _siblings(out) == [] and not out.exists()
    assert _processes_naming(str(staging)) == []  # the simulated board went with it


def test_what_sigkill_leaves_is_removed_by_the_next_run(capsys, tmp_path, mlp):
    out = tmp_path / "dep"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "tinyflow", "deploy", str(mlp), "--board", "sim", "--out",
                             str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=tmp_path)
    while not _siblings(out) and proc.poll() is None:
        time.sleep(0.005)
    proc.kill()
    proc.wait()
    left = _siblings(out)
    for pid in _processes_naming(str(tmp_path)):  # a child it had started, orphaned by SIGKILL
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL and left and f"staging-{proc.pid}-" in left[0]
    assert main(["deploy", str(mlp), "--board", "sim", "--runs", "3", "--out", str(out)]) == 0
    assert _siblings(out) == [] and read_marker(out)


def test_a_swallowed_termination_is_raised_again(tmp_path):
    # C code can clear the exception a signal handler raised (numpy's Cython module init did, and the
    # deploy ran to the end): the CLI raises it again until it is on its way out.
    script = """
import os, signal, sys, time
from tinyflow import cli
cli._install_signal_handlers()
try:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(1)
except BaseException:
    pass  # what the C code did
try:
    time.sleep(30)
except cli._Terminated as t:
    sys.exit(t.signum)
sys.exit(0)
"""
    proc = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert proc.returncode == signal.SIGTERM


def test_stale_siblings_of_dead_runs_are_removed_and_live_ones_kept(capsys, tmp_path, mlp):
    out = tmp_path / "fw"
    dead = subprocess.Popen(["true"])
    dead.wait()
    live = subprocess.Popen(["sleep", "60"])
    try:
        stale = [tmp_path / f".fw.staging-{dead.pid}-abc", tmp_path / f".fw.old-{dead.pid}-def",
                 tmp_path / ".fw.staging-x1y2z3"]  # the last: an earlier tinyflow's name, no pid
        kept = [tmp_path / f".fw.staging-{live.pid}-ghi", tmp_path / ".fw.staging-recent",
                tmp_path / ".other.staging-1-x"]
        for d in stale + kept:
            d.mkdir()
            (d / "half.cc").write_text("half written")
        two_days = time.time() - 2 * 86400
        os.utime(stale[2], (two_days, two_days))
        assert main(_generate(mlp, out)) == 0
        assert [d.exists() for d in stale] == [False, False, False]
        assert [d.exists() for d in kept] == [True, True, True]
        assert read_marker(out)
    finally:
        live.kill()
        live.wait()
