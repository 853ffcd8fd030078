"""Firmware generation, checked with real tools: g++ compiles what does not need TFLM (model arrays, settings,
protocol), PlatformIO's own parser reads platformio.ini, and the resolver is compared with the model's ops."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tinyflow.boards import find_board
from tinyflow.cli import main
from tinyflow.firmware.cnames import identifier, string_literal
from tinyflow.firmware.project import generate, self_test_vectors
from tinyflow.graph.ops import resolver_method
from tinyflow.graph.reader import read_graph
from tinyflow.plan.assessment import assess

needs_gpp = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is not installed")


def _generate(corpus_model, name, board, tmp_path, **kw):
    data = corpus_model(name)
    graph = read_graph(data)
    bp = assess(graph, find_board(board))
    return generate(graph, data, bp, tmp_path / f"{name}-{board}", name, **kw), data, graph


def _compile_and_run(tmp_path: Path, sources: list[Path], include: Path, main_cc: str) -> bytes:
    prog = tmp_path / "prog"
    main_file = tmp_path / "main.cc"
    main_file.write_text(main_cc)
    proc = subprocess.run(["g++", "-std=c++17", "-Wall", "-Wextra", "-Werror", f"-I{include}", str(main_file),
                           *map(str, sources), "-o", str(prog)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return subprocess.run([str(prog)], capture_output=True, check=True).stdout


@needs_gpp
@pytest.mark.parametrize("board", ["esp32s3", "nano33ble"])
def test_model_array_round_trips_through_gpp(corpus_model, tmp_path, board):
    project, data, _ = _generate(corpus_model, "ds_cnn", board, tmp_path)
    src = project.platformio / "src"
    ext = ".cc" if board == "esp32s3" else ".cpp"
    out = _compile_and_run(tmp_path, [src / f"model_data{ext}"], src, """
#include <stdio.h>
#include <stdint.h>
#include "model_data.h"
int main() {
  if (((uintptr_t)g_ds_cnn_model) % 16 != 0) return 3;  // the array must be 16-byte aligned
  fwrite(g_ds_cnn_model, 1, g_ds_cnn_model_len, stdout);
  return 0;
}
""")
    assert out == data


@needs_gpp
def test_settings_header_and_self_test_vectors_compile_and_match(corpus_model, tmp_path):
    data = corpus_model("cnn_pool")
    graph = read_graph(data)
    st = self_test_vectors(data, graph, 2, None)
    bp = assess(graph, find_board("esp32s3"))
    project = generate(graph, data, bp, tmp_path / "p", "cnn pool", labels=[str(i) for i in range(10)],
                       self_test=st)
    src = project.platformio / "src"
    out = _compile_and_run(tmp_path, [src / "model_data.cc", src / "tinyflow_protocol.cc"], src, """
#include <stdio.h>
#include "model_data.h"
#include "tinyflow_config.h"
int main() {
  printf("%zu %zu %zu %d %d\\n", kTinyflowArenaBytes, kTinyflowInputBytes, kTinyflowOutputBytes,
         kTinyflowSelfTestCount, kTinyflowNumLabels);
  printf("%s|%s\\n", kTinyflowBoardId, kTinyflowLabels[9]);
  fwrite(g_tinyflow_self_test_inputs, 1, kTinyflowSelfTestCount * kTinyflowInputBytes, stdout);
  fwrite(g_tinyflow_self_test_outputs, 1, kTinyflowSelfTestCount * kTinyflowOutputBytes, stdout);
  return 0;
}
""")
    head, ids, rest = out.split(b"\n", 2)
    arena, n_in, n_out, count, labels = map(int, head.split())
    assert arena == bp.budget.arena_bytes == bp.memory.min_arena_bytes + bp.board.arena_margin_bytes
    assert (n_in, n_out, count, labels) == (28 * 28, 10, 2, 10)
    assert ids == b"esp32s3-devkitc-1-n8r8|9"
    assert rest == b"".join(st.inputs) + b"".join(st.outputs)


def test_resolver_registers_exactly_the_models_ops(corpus_model, tmp_path):
    for name in ("ds_cnn", "resnet_block", "concat"):
        project, _, graph = _generate(corpus_model, name, "esp32s3", tmp_path)
        text = (project.platformio / "src" / "op_resolver.h").read_text()
        calls = re.findall(r"resolver\.(Add\w+)\(\)", text)
        assert calls == [resolver_method(n) for n in graph.op_names]
        assert len(set(calls)) == len(calls)
        assert f"kTinyflowOpCount = {len(calls)};" in text


@pytest.mark.parametrize("board, framework", [("esp32s3", "espidf"), ("nano33ble", "arduino")])
def test_platformio_ini_reads_back_with_platformios_parser(corpus_model, tmp_path, board, framework):
    from platformio.project.config import ProjectConfig

    project, _, _ = _generate(corpus_model, "mlp", board, tmp_path)
    b = find_board(board)
    cfg = ProjectConfig(str(project.platformio / "platformio.ini"), parse_extra=False)
    assert cfg.validate()
    (env,) = cfg.envs()
    section = f"env:{env}"
    assert cfg.get(section, "board") == b.platformio.board
    assert cfg.get(section, "platform") == b.platformio.platform
    assert cfg.get(section, "framework") == [framework]
    assert cfg.get(section, "monitor_speed") == b.monitor_speed
    for key, value in b.platformio.options.items():
        assert str(cfg.get(section, key)) == value
    if framework == "espidf":
        assert cfg.get(section, "board_build.partitions") == "partitions.csv"
        sdk = (project.platformio / "sdkconfig.defaults").read_text()
        assert "CONFIG_ESP_DEFAULT_CPU_FREQ_MHZ_240=y" in sdk and "CONFIG_SPIRAM_MODE_OCT=y" in sdk
        assert "CONFIG_ESP_CONSOLE_USB_SERIAL_JTAG=y" in sdk and 'CONFIG_IDF_TARGET="esp32s3"' in sdk
        yml = (project.platformio / "src" / "idf_component.yml").read_text()
        assert "espressif/esp-tflite-micro" in yml and "espressif/esp-nn" in yml
        cmake = (project.platformio / "src" / "CMakeLists.txt").read_text()
        for f in ("main.cc", "tinyflow_app.cc", "tinyflow_protocol.cc", "model_data.cc"):
            assert f in cmake and (project.platformio / "src" / f).is_file()
        assert "app0,     app,  ota_0" in (project.platformio / "partitions.csv").read_text()
    else:
        assert cfg.get(section, "lib_deps") == list(b.platformio.lib_deps)
        assert (project.platformio / "src" / "main.cpp").is_file()


def test_arduino_sketch_folder_follows_the_sketch_rules(corpus_model, tmp_path):
    project, _, _ = _generate(corpus_model, "mlp", "esp32s3", tmp_path)
    folder = project.arduino
    assert folder.name == "mlp" and (folder / "mlp.ino").is_file()
    names = {p.name for p in folder.iterdir()}
    assert {"model_data.cpp", "tinyflow_app.cpp", "tinyflow_protocol.cpp", "tinyflow_platform_arduino.cpp"} <= names
    assert not any(n.endswith(".cc") for n in names)  # Arduino compiles .cpp
    ino = (folder / "mlp.ino").read_text()
    assert "#include <TFLIteMicro.h>" in ino and "#define TF_LITE_STATIC_MEMORY" in ino
    readme = (folder / "README.md").read_text()
    assert "esp32:esp32@3.3.11" in readme and "arduino-cli compile --fqbn" in readme
    assert "PartitionScheme=default_8MB" in readme and "PSRAM=opi" in readme and "pioarduino" in readme


def test_the_arena_goes_to_psram_when_asked(corpus_model, tmp_path):
    data = corpus_model("mlp")
    graph = read_graph(data)
    bp = assess(graph, find_board("esp32s3"), psram=True)
    project = generate(graph, data, bp, tmp_path / "ps", "mlp")
    assert "kTinyflowArenaInPsram = 1;" in (project.platformio / "src" / "tinyflow_config.h").read_text()


@needs_gpp
def test_hostile_names_and_labels_stay_inside_their_literals(corpus_model, tmp_path):
    labels = ['say "hi"', "back\\slash", "end */ comment", "??= trigraph", "ünïcødé ✓", "int", "new\nline",
              "tab\there", "0x41", "last"]
    data = corpus_model("cnn_pool")
    graph = read_graph(data)
    bp = assess(graph, find_board("esp32s3"))
    project = generate(graph, data, bp, tmp_path / "h", 'while */ "x"', labels=labels)
    src = project.platformio / "src"
    out = _compile_and_run(tmp_path, [src / "model_data.cc"], src, """
#include <stdio.h>
#include "model_data.h"
#include "tinyflow_config.h"
int main() {
  for (int i = 0; i < kTinyflowNumLabels; ++i) printf("%s%c", kTinyflowLabels[i], 0);
  return 0;
}
""")
    assert out.split(b"\x00")[:-1] == [label.encode() for label in labels]
    assert "g_while_x_model" in (src / "model_data.h").read_text()


def test_identifiers_and_literals():
    assert identifier("my model-v2.1") == "my_model_v2_1"
    assert identifier("2fast") == "m_2fast"
    assert identifier("int") == "int_" and identifier("setup") == "setup_"
    assert identifier("***") == "model"
    assert string_literal('a"b\\c?d\u00e9') == '"a\\"b\\\\c\\?d\\303\\251"'


def test_generate_command_refuses_a_model_that_does_not_fit(corpus_model, tmp_path, capsys):
    path = tmp_path / "vww.tflite"
    path.write_bytes(corpus_model("mobilenet_v1_025_vww"))
    out = tmp_path / "fw"
    assert main(["generate", str(path), "--board", "esp32s3", "--no-psram", "--out", str(out)]) == 0
    assert (out / "platformio" / "platformio.ini").is_file()
    board = Path(__file__).parent / "data" / "tiny_board.toml"
    out2 = tmp_path / "fw2"
    assert main(["generate", str(path), "--board", "tiny-m4", "--board-file", str(board), "--out", str(out2)]) == 1
    assert not out2.exists()
    assert "nothing generated" in capsys.readouterr().err
