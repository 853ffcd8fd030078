"""Version-exact firmware (issue 13): the kernel-library rules are keyed by exact versions, the generated
project pins exactly those, an unknown version is refused, and --kernels reference builds and plans the
same firmware with ESP-NN off."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tinyflow.boards import find_board, load_board_file
from tinyflow.cli import main
from tinyflow.errors import InputError
from tinyflow.firmware.project import generate
from tinyflow.graph.reader import read_graph
from tinyflow.plan import assess, build_versions, known_versions, plan_graph, with_kernels
from tinyflow.plan.kernel_libraries import ESPNN_VERSION

ESP_BOARDS = ["esp32s3-devkitc-1-n8r8", "xiao-esp32s3", "esp32-devkitc"]
UNKNOWN = "esp-tflite-micro 1.4.0 + esp-nn 1.2.4"  # a real-looking later esp-nn that tinyflow has no rules for


def _model(corpus_model, tmp_path: Path, name: str = "ds_cnn") -> Path:
    path = tmp_path / f"{name}.tflite"
    path.write_bytes(corpus_model(name))
    return path


def _project(corpus_model, tmp_path: Path, board, name: str = "ds_cnn"):
    data = corpus_model(name)
    graph = read_graph(data)
    bp = assess(graph, board)
    return generate(graph, data, bp, tmp_path / f"{name}-{board.id}-{board.kernel_library}", name), bp


def test_the_registry_knows_exactly_the_checked_versions():
    assert known_versions("esp-nn") == (ESPNN_VERSION,) == ("esp-tflite-micro 1.4.0 + esp-nn 1.2.3",)
    for board_id in ESP_BOARDS:
        board = find_board(board_id)
        assert board.kernel_library_version == ESPNN_VERSION
        assert build_versions(board) == {"esp-tflite-micro": "1.4.0", "esp-nn": "1.2.3", "arduino-core": "3.3.11"}
    # No ESP-IDF components: nothing of those to pin or report; a core without a version pins none either.
    assert build_versions(find_board("sim")) == {}
    assert build_versions(find_board("nano33ble")) == {}


@pytest.mark.parametrize("board_id", ESP_BOARDS)
def test_generated_idf_component_yml_pins_exact_versions(corpus_model, tmp_path, board_id):
    board = find_board(board_id)
    project, _ = _project(corpus_model, tmp_path, board, "mlp")
    manifest = yaml.safe_load((project.platformio / "src" / "idf_component.yml").read_text())
    deps = manifest["dependencies"]
    versions = build_versions(board)
    # "==X.Y.Z": the component manager's exact clause; no ~, ^, >= or * that would let a newer esp-nn in.
    assert deps["espressif/esp-tflite-micro"] == {"version": f"=={versions['esp-tflite-micro']}"} \
        == {"version": "==1.4.0"}
    assert deps["espressif/esp-nn"] == {"version": f"=={versions['esp-nn']}"} == {"version": "==1.2.3"}
    # The only range left is ESP-IDF's own, which the PlatformIO platform pins (espressif32@6.13.0).
    assert deps["idf"] == {"version": ">=5.1"}


needs_gpp = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is not installed")


@needs_gpp
@pytest.mark.parametrize("board_id, kernels", [("esp32s3", "board"), ("esp32s3", "reference"), ("nano33ble", "board")])
def test_build_version_macros_compile_and_equal_build_versions(corpus_model, tmp_path, board_id, kernels):
    board = with_kernels(find_board(board_id), kernels)
    project, _ = _project(corpus_model, tmp_path, board, "mlp")
    src = project.platformio / "src"
    main_cc = tmp_path / "main.cc"
    main_cc.write_text("""
#include <stdio.h>
#include "tinyflow_config.h"
int main() {
  printf("%s|%s|%s|%d\\n", TINYFLOW_BUILD_ESP_TFLITE_MICRO, TINYFLOW_BUILD_ESP_NN, TINYFLOW_BUILD_ARDUINO_CORE,
         TINYFLOW_BUILD_REFERENCE_KERNELS);
  return 0;
}
""")
    prog = tmp_path / "prog"
    proc = subprocess.run(["g++", "-std=c++17", "-Wall", "-Wextra", "-Werror", f"-I{src}", str(main_cc),
                           str(src / "tinyflow_protocol.cc" if (src / "tinyflow_protocol.cc").exists()
                               else src / "tinyflow_protocol.cpp"), "-o", str(prog)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    out = subprocess.run([str(prog)], capture_output=True, text=True, check=True).stdout.strip()
    v = build_versions(board)
    assert out == "|".join([v.get("esp-tflite-micro", ""), v.get("esp-nn", ""), v.get("arduino-core", ""),
                            "1" if kernels == "reference" else "0"])


def test_an_unknown_kernel_library_version_is_one_line_exit_2(corpus_model, tmp_path):
    model = _model(corpus_model, tmp_path, "mlp")
    for command in (["plan", str(model)], ["generate", str(model), "--out", str(tmp_path / "gen")]):
        proc = subprocess.run([sys.executable, "-m", "tinyflow", *command, "--board", "esp32s3",
                               "--kernel-library-version", UNKNOWN], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        # Names the option, the version asked for, the versions tinyflow knows and what to do.
        assert lines[0].startswith(f'tinyflow: error: --kernel-library-version "{UNKNOWN}": tinyflow has no esp-nn')
        assert f'"{ESPNN_VERSION}"' in lines[0] and "give one of those" in lines[0]
    assert not (tmp_path / "gen").exists()


def test_a_board_file_with_an_unknown_version_is_refused_naming_the_file(corpus_model, tmp_path, capsys):
    text = find_board("esp32s3").source.read_text().replace(ESPNN_VERSION, UNKNOWN)
    path = tmp_path / "later.toml"
    path.write_text(text.replace('id = "esp32s3-devkitc-1-n8r8"', 'id = "later-s3"'))
    board = load_board_file(path)  # the syntax is right: which versions have rules is the planner's business
    assert board.kernel_library_version == UNKNOWN
    assert main(["plan", str(_model(corpus_model, tmp_path, "mlp")), "--board", "later-s3",
                 "--board-file", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f'tinyflow: error: {path}: kernel_library_version "{UNKNOWN}": tinyflow has no esp-nn')
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.replace(ESPNN_VERSION, "esp-nn latest"), "is not exact versions like"),
    (lambda s: s.replace(ESPNN_VERSION, "esp-tflite-micro ~1.4.0 + esp-nn 1.2.3"), "is not exact versions like"),
    (lambda s: s.replace(ESPNN_VERSION, "CMSIS-NN 4ab83cc"), "does not name esp-nn kernels"),
])
def test_the_board_schema_checks_the_version_field(tmp_path, edit, message):
    path = tmp_path / "b.toml"
    path.write_text(edit(find_board("esp32s3").source.read_text()))
    with pytest.raises(InputError, match=message) as e:
        load_board_file(path)
    assert str(path) in str(e.value) and "kernel_library_version" in str(e.value)


def test_the_version_key_flows_into_plan_json(corpus_model, tmp_path, capsys):
    model = _model(corpus_model, tmp_path)
    assert main(["plan", str(model), "--board", "esp32s3", "--json", "--kernel-library-version", ESPNN_VERSION]) == 0
    j = json.loads(capsys.readouterr().out)
    assert j["kernel_library"] == "esp-nn" and j["kernel_library_version"] == ESPNN_VERSION
    assert j["build_versions"] == {"esp-tflite-micro": "1.4.0", "esp-nn": "1.2.3", "arduino-core": "3.3.11"}
    assert j["kernels"] == f"ESP-NN (ESP32-S3 vector kernels; {ESPNN_VERSION})"
    # The Arduino sketch's versions are not known: the plan says so instead of implying it checked them.
    assert any("could not determine" in n and "esp32:esp32@3.3.11" in n for n in j["notes"])
    # The same figure as the board's own (default) version: naming it changes nothing else.
    assert main(["plan", str(model), "--board", "esp32s3", "--json"]) == 0
    default = json.loads(capsys.readouterr().out)
    assert default["arena"]["min_bytes"] == j["arena"]["min_bytes"]


def test_a_board_without_the_field_plans_as_with_todays_versions(corpus_model, tmp_path):
    board = find_board("esp32s3")
    text = re.sub(r"(?m)^kernel_library_version = .*\n", "", board.source.read_text())
    path = tmp_path / "b.toml"
    path.write_text(text)
    bare = load_board_file(path)
    assert bare.kernel_library_version is None and build_versions(bare) == build_versions(board)
    graph = read_graph(corpus_model("ds_cnn"))
    assert assess(graph, bare).memory.min_arena_bytes == assess(graph, board).memory.min_arena_bytes


def test_kernels_reference_plans_with_the_reference_rules(corpus_model, tmp_path, capsys):
    graph = read_graph(corpus_model("ds_cnn"))
    board = find_board("esp32s3")
    ref_board = with_kernels(board, "reference")
    assert dataclasses.replace(ref_board, kernel_library="esp-nn") == board  # only the kernels change
    ref = assess(graph, ref_board)
    # Equal to the reference-kernels plan of the same 32-bit MCU, and different from ESP-NN's (S3 scratch).
    assert ref.memory.min_arena_bytes == plan_graph(graph, 4, "reference", "esp32s3").min_arena_bytes
    assert ref.memory.min_arena_bytes < assess(graph, board).memory.min_arena_bytes
    assert ref.kernels == f"TFLM reference kernels (ESP-NN off; {ESPNN_VERSION})"
    model = _model(corpus_model, tmp_path)
    assert main(["plan", str(model), "--board", "esp32s3", "--kernels", "reference", "--json"]) == 0
    j = json.loads(capsys.readouterr().out)
    assert j["kernel_library"] == "reference" and j["arena"]["min_bytes"] == ref.memory.min_arena_bytes
    assert j["build_versions"]["esp-nn"] == "1.2.3"  # still pinned: esp-tflite-micro depends on it


def test_kernels_reference_generates_the_same_project_with_esp_nn_off(corpus_model, tmp_path, capsys):
    model = _model(corpus_model, tmp_path)
    on, off = tmp_path / "on", tmp_path / "off"
    assert main(["generate", str(model), "--board", "esp32s3", "--out", str(on)]) == 0
    assert main(["generate", str(model), "--board", "esp32s3", "--out", str(off), "--kernels", "reference"]) == 0
    capsys.readouterr()
    cmake_on = (on / "platformio" / "CMakeLists.txt").read_text()
    cmake_off = (off / "platformio" / "CMakeLists.txt").read_text()
    assert "ESP_NN" not in cmake_on
    # After project(): esp-tflite-micro's own -DESP_NN is undone on its library target.
    lines = [ln for ln in cmake_off.splitlines() if ln and not ln.startswith("#")]
    assert lines[-3:] == ["project(tinyflow_ds_cnn)",
                          "idf_component_get_property(tinyflow_tflm_lib espressif__esp-tflite-micro COMPONENT_LIB)",
                          "target_compile_options(${tinyflow_tflm_lib} PRIVATE -UESP_NN)"]
    # Same pins, same sources apart from the arena and the kernels named in comments and strings.
    for rel in ("platformio/src/idf_component.yml", "platformio/src/model_data.cc", "platformio/src/op_resolver.h",
                "platformio/sdkconfig.defaults"):
        assert (on / rel).read_text() == (off / rel).read_text(), rel
    graph = read_graph(model.read_bytes())
    ref = assess(graph, with_kernels(find_board("esp32s3"), "reference"))
    config = (off / "platformio" / "src" / "tinyflow_config.h").read_text()
    assert f"kTinyflowPlannedArenaBytes = {ref.memory.min_arena_bytes};" in config
    assert "#define TINYFLOW_BUILD_REFERENCE_KERNELS 1" in config
    assert "TFLM reference kernels (ESP-NN off" in (off / "platformio" / "platformio.ini").read_text()
    # The Arduino sketch cannot switch ESP-NN off (the core's library is prebuilt): its README says so.
    readme = next((off / "arduino").glob("*/README.md")).read_text()
    assert "does not reach this sketch" in readme and "Kernel library versions: unknown" in readme
    assert "does not reach" not in next((on / "arduino").glob("*/README.md")).read_text()


def test_kernels_options_are_checked_by_the_parser(corpus_model, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["plan", str(_model(corpus_model, tmp_path, "mlp")), "--kernels", "fast"])
    assert e.value.code == 2 and "--kernels" in capsys.readouterr().err
    with pytest.raises(InputError, match="reference kernels have no library version"):
        with_kernels(find_board("sim"), None, ESPNN_VERSION)
    # An Arduino-framework board's TFLM library comes prebuilt with its kernels: no A/B there, said so.
    assert main(["plan", str(tmp_path / "mlp.tflite"), "--board", "nano33ble", "--kernels", "reference"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tinyflow: error: --kernels reference: nano33ble-sense builds its TFLM library with "
                          "cmsis-nn prebuilt in") and len(err.splitlines()) == 1
    assert with_kernels(find_board("sim"), "reference") == find_board("sim")  # already reference: nothing to do


def test_deploy_kernels_reference_reports_and_builds_reference_kernels(corpus_model, tmp_path):
    from tinyflow.pipeline import DeployOptions, deploy

    model = _model(corpus_model, tmp_path)
    result = deploy(model, DeployOptions(board="esp32s3", kernels="reference", out=str(tmp_path / "out")))
    report = json.loads((result.out_dir / "report.json").read_text())
    assert report["board"]["kernel_library"] == "reference"
    assert report["memory"]["kernel_library"] == "reference"
    assert report["memory"]["kernels"] == f"TFLM reference kernels (ESP-NN off; {ESPNN_VERSION})"
    assert f"## Memory (TFLM reference kernels (ESP-NN off; {ESPNN_VERSION}))" in \
        (result.out_dir / "report.md").read_text()
    ref = assess(read_graph(model.read_bytes()), with_kernels(find_board("esp32s3"), "reference"))
    assert report["memory"]["arena"]["greedy_min_bytes"] == ref.memory.min_arena_bytes
    cmake = (result.out_dir / result.report["firmware"]["platformio"] / "CMakeLists.txt").read_text()
    assert "target_compile_options(${tinyflow_tflm_lib} PRIVATE -UESP_NN)" in cmake
    with pytest.raises(InputError, match="--kernel-library-version"):
        deploy(model, DeployOptions(board="esp32s3", kernel_library_version=UNKNOWN, out=str(tmp_path / "o2")))
    assert not (tmp_path / "o2").exists()
