"""deploy's reports: report.json keys, report.md, report.html rendered in headless Chromium; stage reuse."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tinyflow.cli import main
from tinyflow.model.optimization import OptimizeOptions
from tinyflow.pipeline import DeployOptions, deploy
from tinyflow.report.writer import render_html

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.fixture(scope="module")
def digits_deploy(digits_example, tmp_path_factory):
    model, data = digits_example
    out = tmp_path_factory.mktemp("rep") / "digits"
    return deploy(model, DeployOptions(data=str(data), out=str(out)))


def test_report_json_has_stable_keys_and_a_schema_version(digits_deploy):
    r = json.loads((digits_deploy.out_dir / "report.json").read_text())
    assert r["schema_version"] == 1
    for key in ("board", "model", "optimize", "accuracy", "memory", "firmware", "device", "timings_s", "artifacts"):
        assert key in r, key
    assert {"load", "optimize", "convert", "evaluate", "plan", "generate"} <= set(r["timings_s"])
    assert r["reused_model_stages"] is False
    for name in r["artifacts"].values():
        assert (digits_deploy.out_dir / name).is_file()


def test_report_md_summarises_the_run(digits_deploy):
    md = (digits_deploy.out_dir / "report.md").read_text()
    assert "accuracy float → int8 → device" in md and "(simulated)" in md
    assert "The smallest arena with which TFLM builds" in md and "| 0 | CONV_2D |" in md


def _dump_dom(html: Path, tmp_path: Path) -> str:
    proc = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           f"--user-data-dir={tmp_path / 'chromium-profile'}", "--dump-dom", html.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-500:]
    return proc.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (.ci/run installs Debian's chromium)")
def test_report_html_renders_in_headless_chromium_with_its_figures(digits_deploy, tmp_path):
    report = json.loads((digits_deploy.out_dir / "report.json").read_text())
    # A board's per-op profile, as a hardware measurement would report it, to draw that chart too.
    hw = copy.deepcopy(report)
    hw["device"].update(kind="hardware", label="measured on the device", profile=[
        {"index": o["index"], "op": o["op"], "macs": o["macs"], "ticks": 1000 + 10 * o["index"], "us": 4.2,
         "macs_per_cycle": 0.5} for o in report["memory"]["ops"]])
    page = tmp_path / "hw.html"
    page.write_text(render_html(hw))
    for html, profile in ((digits_deploy.out_dir / "report.html", False), (page, True)):
        dom = _dump_dom(html, tmp_path)
        assert 'id="summary"' in dom
        for chart in ("accuracy-chart", "arena-chart", "macs-chart", "bytes-chart"):
            assert f'id="{chart}"' in dom, chart
        buffers = report["memory"]["arena"]["buffers"]
        arena_svg = dom.split('id="arena-chart"')[1].split("</svg>")[0]
        assert arena_svg.count('class="buffer"') == len(buffers) and 'class="peak"' in arena_svg
        if profile:
            assert 'id="optime-chart"' in dom
            optime_svg = dom.split('id="optime-chart"')[1].split("</svg>")[0]
            assert optime_svg.count('class="bar"') == len(report["memory"]["ops"])
        else:
            assert 'id="optime-missing"' in dom and "simulated board" in dom
    assert "http://" not in (digits_deploy.out_dir / "report.html").read_text().replace(
        "http://www.w3.org/2000/svg", "")  # self-contained: nothing to fetch


def test_rerun_reuses_the_model_stages_and_a_change_recomputes(digits_example, tmp_path):
    model, data = digits_example
    out = tmp_path / "again"
    first = deploy(model, DeployOptions(data=str(data), out=str(out), eval_limit=60))
    second = deploy(model, DeployOptions(data=str(data), out=str(out), eval_limit=60))
    assert not first.reused and second.reused
    assert second.report["reused_model_stages"] is True and "optimize" not in second.report["timings_s"]
    assert second.tflite_path.read_bytes() == first.tflite_path.read_bytes()
    assert second.report["accuracy"] == first.report["accuracy"]
    assert second.report["device"]["bit_exact_share"] == 1.0  # still measured, against the cached host outputs
    third = deploy(model, DeployOptions(data=str(data), out=str(out), eval_limit=60,
                                        optimize=OptimizeOptions(prune=0.3, epochs=1)))
    assert not third.reused and third.report["optimize"]["method"] == "prune+ptq"


def test_convert_and_optimize_commands_on_their_own(digits_example, tmp_path, capsys):
    model, data = digits_example
    assert main(["convert", str(model), "--data", str(data), "--out", str(tmp_path / "c")]) == 0
    r = json.loads((tmp_path / "c" / "report.json").read_text())
    assert r["optimize"]["method"] == "ptq" and (tmp_path / "c" / "model_int8.tflite").is_file()
    assert main(["optimize", str(model), "--data", str(data), "--prune", "0.5", "--epochs", "2", "--out",
                 str(tmp_path / "o")]) == 0
    r = json.loads((tmp_path / "o" / "report.json").read_text())
    assert r["optimize"]["sparsity"]["overall"] >= 0.5
    capsys.readouterr()
    assert main(["inspect", str(tmp_path / "o" / "model_int8.tflite"), "--json"]) == 0
    assert {o["op"] for o in json.loads(capsys.readouterr().out)["ops"]} >= {"CONV_2D", "FULLY_CONNECTED"}


_PAYLOAD = ("<img src=x onerror=\"document.body.appendChild(document.createElement('pwned'))\">"
            "<script>document.body.appendChild(document.createElement('pwned'))</script>")


def _hostile(value):
    """Every text in the report carries markup that would run if it reached the page unescaped."""
    if isinstance(value, dict):
        return {k: _hostile(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_hostile(v) for v in value]
    return value + _PAYLOAD if isinstance(value, str) else value


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (.ci/run installs Debian's chromium)")
def test_report_html_with_hostile_names_runs_no_script_in_chromium(digits_deploy, tmp_path):
    # A model file named <img onerror=...>.tflite, a board name, op names, notes: all reach report.html.
    report = _hostile(json.loads((digits_deploy.out_dir / "report.json").read_text()))
    page = tmp_path / "hostile.html"
    page.write_text(render_html(report))
    assert _PAYLOAD not in page.read_text()
    dom = _dump_dom(page, tmp_path)
    assert 'id="summary"' in dom  # the page rendered
    assert "<pwned>" not in dom and "<script>document" not in dom
    assert "&lt;img src=x onerror=" in dom  # shown as text
