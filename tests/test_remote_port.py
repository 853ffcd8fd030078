"""Boards on another machine: `--port socket://` and `rfc2217://` against the simulated board served over a real
loopback TCP socket, the way ser2net (raw mode) or an RFC 2217 server (esp_rfc2217_server, ser2net telnet mode)
serves a real board; plus the URL errors and the refusal to flash over the network."""

from __future__ import annotations

import contextlib
import io
import json
import os
import select
import socket
import subprocess
import sys
import threading
import tty
from pathlib import Path

import numpy as np
import pytest
import serial
import serial.rfc2217

from tinyflow.boards import find_board
from tinyflow.cli import main
from tinyflow.device.flashing import flash
from tinyflow.device.ports import open_port, parse_port_url
from tinyflow.device.simulator import SimProcess
from tinyflow.errors import DeviceError, InputError

SAMPLES = 20
_ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}  # this checkout's tinyflow
SAME = ("kind", "label", "board_id", "samples", "accuracy", "bit_exact_share", "max_lsb_diff", "runs", "arena_bytes")


class _PtyLine(serial.Serial):
    """The simulated board's pty as the RFC 2217 server's serial port. A pty has no modem lines (the ioctls
    fail with ENOTTY), so DTR/RTS are recorded and CTS/DSR/RI/CD read as idle; the baud rate is real termios."""

    def __init__(self, *args: object, **kw: object):
        self.control: list[tuple[str, bool]] = []
        self.bauds: list[int] = []
        super().__init__(*args, **kw)

    def _update_dtr_state(self) -> None:
        self.control.append(("dtr", self._dtr_state))

    def _update_rts_state(self) -> None:
        self.control.append(("rts", self._rts_state))

    def _set_baudrate(self, value: int) -> None:
        if self.is_open:
            self.bauds.append(value)  # what a client asked for (PortManager sets it on SET_BAUDRATE)
        serial.Serial.baudrate.fset(self, value)

    baudrate = property(serial.Serial.baudrate.fget, _set_baudrate)

    cts = dsr = cd = property(lambda self: True)
    ri = property(lambda self: False)


class _Writer:
    """What PortManager writes its Telnet answers through (it wants a write() that is thread-safe)."""

    def __init__(self, conn: socket.socket):
        self.conn, self.lock = conn, threading.Lock()

    def write(self, data: bytes) -> None:
        with self.lock:
            self.conn.sendall(data)


class _UnacknowledgedControl(serial.rfc2217.PortManager):
    """An RFC 2217 server that, like esptool's esp_rfc2217_server (esp_port_manager.py in its repository), takes
    DTR/RTS changes without acknowledging them. A client that waits for the acknowledgement fails to open."""

    unacknowledged = 0

    def _telnet_process_subnegotiation(self, suboption: bytes) -> None:
        r = serial.rfc2217
        if suboption[0:1] == r.COM_PORT_OPTION and suboption[1:2] == r.SET_CONTROL and suboption[2:3] in (
                r.SET_CONTROL_DTR_ON, r.SET_CONTROL_DTR_OFF, r.SET_CONTROL_RTS_ON, r.SET_CONTROL_RTS_OFF):
            type(self).unacknowledged += 1
            return
        super()._telnet_process_subnegotiation(suboption)


class TcpBridge:
    """Serves a board's pty on 127.0.0.1:<free port>, one connection at a time, forwarding bytes both ways.
    ``rfc2217``: speak RFC 2217 with pyserial's own server side (serial.rfc2217.PortManager), which applies
    the client's baud rate to the pty. ``close_after``: drop the connection after that many bytes to the board
    (a network that goes away mid-run)."""

    def __init__(self, device_path: str, rfc2217: bool = False, close_after: int | None = None,
                 manager: type = serial.rfc2217.PortManager):
        self.rfc2217, self.close_after, self.manager = rfc2217, close_after, manager
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.line = _PtyLine(device_path, 9600, timeout=0)  # 9600: pyserial's default, not tinyflow's rate
        tty.setraw(self.line.fileno())
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"{'rfc2217' if self.rfc2217 else 'socket'}://127.0.0.1:{self.port}"

    def __enter__(self) -> TcpBridge:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.listener.close()
        self.line.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            if select.select([self.listener], [], [], 0.05)[0]:
                conn, _ = self.listener.accept()
                self.connections += 1
                try:
                    self._serve(conn)
                except OSError:
                    pass  # the client went away: wait for the next one, as ser2net does
                finally:
                    conn.close()

    def _serve(self, conn: socket.socket) -> None:
        manager = self.manager(self.line, _Writer(conn)) if self.rfc2217 else None
        fd, sent = self.line.fileno(), 0
        while not self._stop.is_set():
            ready = select.select([conn, fd], [], [], 0.05)[0]
            if conn in ready:
                data = conn.recv(4096)
                if not data:
                    return
                if manager is not None:
                    data = b"".join(manager.filter(data))  # Telnet commands are answered, data passes
                if self.close_after is not None and sent + len(data) > self.close_after:
                    return
                sent += len(data)
                if data:
                    os.write(fd, data)
            if fd in ready:
                data = os.read(fd, 4096)
                conn.sendall(b"".join(manager.escape(data)) if manager is not None else data)


@pytest.fixture(scope="module")
def model(corpus_model, tmp_path_factory):
    d = tmp_path_factory.mktemp("remote")
    path = d / "cnn_pool.tflite"
    path.write_bytes(corpus_model("cnn_pool"))
    rng = np.random.default_rng(3)
    npz = d / "data.npz"
    np.savez(npz, x_train=rng.normal(size=(8, 28, 28, 1)).astype("float32"), y_train=rng.integers(0, 10, 8),
             x_test=rng.normal(size=(SAMPLES, 28, 28, 1)).astype("float32"), y_test=rng.integers(0, 10, SAMPLES))
    return path, npz


def _args(model, port: str) -> list[str]:
    path, npz = model
    return ["measure", str(path), "--data", str(npz), "--runs", "5", "--warmup", "1", "--json", "--board", "sim",
            "--port", port]


@pytest.fixture(scope="module")
def local(model):
    """The same measurement on the simulated board's own pty: what every remote run must equal."""
    out = io.StringIO()
    with SimProcess(model[0]) as sim, contextlib.redirect_stdout(out):
        assert main(_args(model, sim.port)) == 0
    result = json.loads(out.getvalue())
    assert result["kind"] == "simulated" and result["samples"] == SAMPLES and result["bit_exact_share"] == 1.0
    return result


def _same(remote: dict, local: dict) -> None:
    assert {k: remote[k] for k in SAME} == {k: local[k] for k in SAME}
    assert remote["label"] == "simulated (host timings, not a device)"


def test_measure_over_socket_url_equals_the_local_pty(model, local, capsys):
    with SimProcess(model[0]) as sim, TcpBridge(sim.port) as bridge:
        assert main(_args(model, bridge.url)) == 0
        assert bridge.connections == 1
    _same(json.loads(capsys.readouterr().out), local)


def test_measure_over_socket_url_as_a_subprocess(model, local):
    with SimProcess(model[0]) as sim, TcpBridge(sim.port) as bridge:
        proc = subprocess.run([sys.executable, "-m", "tinyflow", *_args(model, bridge.url)], capture_output=True,
                              text=True, timeout=300, env=_ENV)
    assert proc.returncode == 0, proc.stderr
    _same(json.loads(proc.stdout), local)


def test_measure_over_rfc2217_sets_the_baud_rate_once_and_equals_the_local_pty(model, local, capsys):
    with SimProcess(model[0]) as sim, TcpBridge(sim.port, rfc2217=True) as bridge:
        assert main(_args(model, bridge.url)) == 0
        bauds = list(bridge.line.bauds)
    _same(json.loads(capsys.readouterr().out), local)
    # The board's rate went through the protocol, once at open: the link's per-read timeouts did not each
    # renegotiate the port settings (pyserial's rfc2217 timeout setter would).
    assert bauds == [find_board("sim").monitor_speed]


def test_rfc2217_url_with_its_own_options_works(model):
    """A user's ?ign_set_control (as esptool's docs give it) and ?timeout= are kept, not doubled."""
    with SimProcess(model[0]) as sim, TcpBridge(sim.port, rfc2217=True) as bridge:
        port = open_port(bridge.url + "?ign_set_control&timeout=5", find_board("sim"))
        try:
            assert port.portstr.count("ign_set_control") == 1 and port._network_timeout == 5.0
            from tinyflow.device.link import Link

            hello = Link(port).wait_hello(10)
        finally:
            port.close()
    assert hello.simulated


def test_rfc2217_to_a_server_that_never_acknowledges_dtr_rts(model):
    """tinyflow adds ?ign_set_control, so a server like esptool's opens; the link needs no control lines."""
    with SimProcess(model[0]) as sim, TcpBridge(sim.port, rfc2217=True, manager=_UnacknowledgedControl) as bridge:
        with pytest.raises(serial.SerialException, match="waiting for option 'control'"):
            serial.serial_for_url(bridge.url).close()  # pyserial on its own: waits 3 s, then gives up
        port = open_port(bridge.url, find_board("sim"))
        try:
            from tinyflow.device.link import Link

            hello = Link(port).wait_hello(10)
        finally:
            port.close()
    assert hello.simulated and _UnacknowledgedControl.unacknowledged >= 2


@pytest.mark.parametrize("rfc2217", [False, True], ids=["socket", "rfc2217"])
def test_a_connection_lost_mid_run_is_one_line(model, capsys, rfc2217):
    with SimProcess(model[0]) as sim, TcpBridge(sim.port, rfc2217=rfc2217, close_after=3000) as bridge:
        assert main(_args(model, bridge.url)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and bridge.url in err and "connection to the board's machine was lost" in err


@pytest.mark.parametrize("url, problem", [
    ("ftp://127.0.0.1:4000", "does not open ftp:// ports"),
    ("socket://127.0.0.1", "no TCP port"),
    ("socket://127.0.0.1:70000", "1 to 65535"),
    ("rfc2217://127.0.0.1:port", "1 to 65535"),
    ("socket://:4000", "no host"),
    ("rfc2217://127.0.0.1:4000?baud=9600", "does not take the option 'baud'"),
    ("socket://127.0.0.1:4000/ttyUSB0", "options after '?'"),
    ("rfc2217://127.0.0.1:4000?timeout=soon", "timeout= is"),
    ("rfc2217://127.0.0.1:4000?timeout=inf", "timeout= is"),
])
def test_a_malformed_url_is_one_line_naming_it_and_the_fix(model, capsys, url, problem):
    assert main(_args(model, url)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and url in err and problem in err
    assert "HOST:PORT" in err or "options are" in err or "timeout=" in err


def test_nothing_listening_is_one_line_and_ends(model):
    """A port that is bound but not listening refuses at once; run as a subprocess so a hang would show up
    as the timeout, not a stuck test session."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        url = f"socket://127.0.0.1:{taken.getsockname()[1]}"
        for scheme_url in (url, url.replace("socket", "rfc2217")):
            proc = subprocess.run([sys.executable, "-m", "tinyflow", *_args(model, scheme_url)], capture_output=True,
                                  text=True, timeout=120, env=_ENV)
            err = proc.stderr.strip()
            assert proc.returncode == 2 and len(err.splitlines()) == 1, err
            assert scheme_url in err and "nothing is listening" in err and "start the serial server" in err


def test_a_server_that_does_not_speak_rfc2217_is_named(model):
    """A raw TCP server (ser2net in raw mode) behind rfc2217:// never answers the Telnet negotiation: pyserial
    gives up after its network timeout and the error says to use socket://."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        url = f"rfc2217://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(DeviceError, match=r"does not speak RFC 2217.*socket://127\.0\.0\.1"):
            open_port(url, find_board("sim"))


def test_socket_url_to_an_rfc2217_server_says_to_use_rfc2217(model):
    with SimProcess(model[0]) as sim, TcpBridge(sim.port, rfc2217=True) as bridge:
        url = bridge.url.replace("rfc2217", "socket")
        with pytest.raises(DeviceError, match=r"speaks Telnet \(RFC 2217\), not raw TCP; use rfc2217://127"):
            open_port(url, find_board("sim"))


def test_an_unresolvable_host_is_named():
    with pytest.raises(DeviceError, match=r"cannot resolve the host 'no-such-host\.invalid'"):
        open_port("socket://no-such-host.invalid:4000", find_board("sim"))


def test_flash_refuses_a_url_and_says_how(tmp_path, capsys):
    project = tmp_path / "platformio"
    project.mkdir()
    (project / "platformio.ini").write_text("[env:x]\n")
    url = "rfc2217://lab-pi:4000"
    with pytest.raises(InputError) as e:
        flash(project, url, find_board("esp32s3"))
    text = str(e.value)
    assert "esp_rfc2217_server.py -p 4000" in text and "rfc2217://lab-pi:4000?ign_set_control" in text
    assert "write_flash" in text and "USB-Serial/JTAG" in text and f"tinyflow measure MODEL.tflite --port {url}" in text
    assert main(["flash", str(project), "--port", url, "--board", "esp32s3"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not flash a board on another machine" in err


def test_deploy_refuses_a_url_before_building(capsys):
    with pytest.raises(SystemExit) as e:
        main(["deploy", "--port", "socket://lab-pi:4000"])  # no model given: it would train the bundled example
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and err.startswith("tinyflow: error: socket://lab-pi:4000")
    assert "does not flash a board on another machine" in err and "tinyflow measure" in err
    with pytest.raises(SystemExit):
        main(["deploy", "--port", "socket://lab-pi"])
    assert "no TCP port" in capsys.readouterr().err


def test_a_host_that_never_answers_is_a_bounded_error():
    """A listener whose accept queue is full drops new SYNs, as a firewall or a machine that is down does: the
    connect gives up after pyserial's 5 s and says so."""
    with socket.socket() as full:
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        address = full.getsockname()
        queued = []
        try:
            for _ in range(8):  # fill the queue (its length depends on the kernel)
                c = socket.socket()
                c.settimeout(0.5)
                queued.append(c)
                c.connect(address)
        except OSError:
            pass
        try:
            with pytest.raises(DeviceError, match=r"no answer from 127\.0\.0\.1:\d+ within 5 s; check the address"):
                open_port(f"socket://127.0.0.1:{address[1]}", find_board("sim"))
        finally:
            for c in queued:
                c.close()


def test_parse_port_url_keeps_what_pyserial_needs():
    r = parse_port_url("RFC2217://[::1]:4000?ign_set_control")
    assert (r.scheme, r.host, r.port, r.address) == ("rfc2217", "::1", 4000, "[::1]:4000")
    assert "ign_set_control" in r.options


def test_the_python_deploy_refuses_a_url_before_any_work(tmp_path):
    from tinyflow.errors import InputError
    from tinyflow.pipeline import DeployOptions, deploy

    out = tmp_path / "out"
    with pytest.raises(InputError, match="does not flash a board on another machine"):
        deploy(tmp_path / "missing.keras", DeployOptions(port="rfc2217://lab-pi:4000", out=str(out)))
    assert not out.exists()  # refused before loading the (missing) model or creating the folder
