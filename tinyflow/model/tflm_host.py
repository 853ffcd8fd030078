"""Run the real TFLM interpreter (the ``tflite-micro`` package) on the host, always in a child process.

TFLM aborts the whole process on some models (e.g. a softmax whose multiplier is unrepresentable), so
tinyflow never loads a model into TFLM in its own process. The parent writes a request ``.npz``, runs
a child Python on ``_child``, and reads the answer back; a crash becomes a clear error.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DoesNotFitError, InputError, first_line

# Generous default for runs that are not about memory: the interpreter only needs to build.
DEFAULT_RUN_ARENA = 8 * 1024 * 1024
_TIMEOUT_S = 600


@dataclass(frozen=True)
class Allocations:
    """What the RecordingMicroAllocator reports after AllocateTensors."""

    total_bytes: int
    head_bytes: int
    tail_bytes: int
    buckets: dict[str, int]


def tflm_version() -> str:
    try:
        from importlib.metadata import version

        return version("tflite-micro")
    except Exception:
        return "unknown"


# The child is started with -c, not -m: the package's __init__ imports this module, and running it
# with -m would execute it a second time as __main__.
_CHILD = "import sys; from tinyflow.model.tflm_host import _child; _child(*sys.argv[1:4])"


class TflmSetupError(InputError):
    """TFLM refused to set the model up (a kernel's Prepare failed): the plan may know why."""


class TflmCrash(Exception):
    def __init__(self, returncode: int, stderr: str):
        super().__init__(stderr)
        self.returncode, self.stderr = returncode, stderr


def _call(command: str, request: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    with tempfile.TemporaryDirectory(prefix="tinyflow-tflm-") as tmp:
        req, resp = Path(tmp) / "request.npz", Path(tmp) / "response.npz"
        np.savez(req, **request)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD, command, str(req), str(resp)],
            capture_output=True, text=True, timeout=_TIMEOUT_S, env=env,
        )
        if proc.returncode != 0 or not resp.exists():
            raise TflmCrash(proc.returncode, proc.stderr)
        with np.load(resp, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}


def _tflm_message(stderr: str) -> str:
    """What TFLM said, without the child's traceback: no 'File ...' lines, source lines or ^^^ markers."""
    lines = []
    for raw in stderr.splitlines():
        line = raw.strip()
        if not line or raw.startswith((" ", "\t", "Traceback")) or set(line) <= set("^~ "):
            continue
        lines.append(line)
    return "; ".join(dict.fromkeys(lines[-3:]))[:400] if lines else "no message"


def _explain_crash(err: TflmCrash, source: str) -> Exception:
    msg = _tflm_message(err.stderr)
    if err.returncode < 0:
        # Known causes are quantization hazards (the plan stage names the op: exit 1 with reports); a crash
        # the plan cannot explain is a corrupt model (check_runs makes that exit 2).
        return DoesNotFitError(f"{source}: TFLM crashed (signal {-err.returncode}) running the model: {msg}; "
                               "`tinyflow plan` names the op if it is a quantization hazard")
    missing = re.search(r"Didn't find op for builtin opcode '(\w+)'", err.stderr)
    if missing:
        return InputError(f"{source}: TFLM has no kernel for op {missing.group(1)}; replace that layer")
    if "failed to allocate tensors" in err.stderr.lower():
        return TflmSetupError(f"{source}: TFLM cannot set up this model ({msg}): an op's Prepare refused its tensors; "
                          "`tinyflow plan` on the .tflite names the op when it is a known hazard")
    return InputError(f"{source}: TFLM could not run the model: {msg}")


def run_model(model: bytes, inputs: list[np.ndarray], arena_size: int | None = None,
              source: str = "<model>") -> list[np.ndarray]:
    """Invoke the model once per sample; ``inputs[i]`` holds every sample for input tensor ``i``."""
    request = {"model": np.frombuffer(model, dtype=np.uint8),
               "arena": np.array(arena_size or DEFAULT_RUN_ARENA)}
    for i, x in enumerate(inputs):
        request[f"in{i}"] = x
    try:
        out = _call("run", request)
    except TflmCrash as e:
        raise _explain_crash(e, source) from None
    return [out[f"out{i}"] for i in range(len([k for k in out if k.startswith("out")]))]


def builds(model: bytes, arena_size: int, source: str = "<model>") -> bool:
    """Whether the interpreter builds (AllocateTensors succeeds) with exactly ``arena_size`` bytes."""
    try:
        out = _call("builds", {"model": np.frombuffer(model, dtype=np.uint8), "arena": np.array([arena_size])})
    except TflmCrash as e:
        raise _explain_crash(e, source) from None
    return bool(out["ok"][0])


_RUNS: set[str] = set()  # sha256 of models that built and invoked in this process: check once


def check_runs(model: bytes, source: str = "<model>", arena_size: int | None = None) -> None:
    """Build the interpreter and invoke the model once on zero inputs, in a child; a model TFLM refuses or
    crashes on is an ``InputError`` with what TFLM said. A structurally valid flatbuffer can still be one
    TFLM cannot run (an op whose Prepare refuses its tensors); this is the check before saying "fits"."""
    key = hashlib.sha256(model).hexdigest() + f":{arena_size}"
    if key in _RUNS:
        return
    try:
        out = _call("check", {"model": np.frombuffer(model, dtype=np.uint8),
                              "arena": np.array(arena_size or DEFAULT_RUN_ARENA)})
    except TflmCrash as e:
        err = _explain_crash(e, source)
        if isinstance(err, DoesNotFitError):  # a signal: TFLM crashed on it, which the plan did not foresee
            err = InputError(f"{source}: TFLM crashed (signal {-e.returncode}) running the model: "
                             f"{_tflm_message(e.stderr)}; it is corrupt or has an op TFLM cannot run")
        raise err from None
    if str(out["error"]):
        raise InputError(f"{source}: the host TFLM interpreter cannot run the model: {out['error']}; "
                         "it is corrupt or has an op TFLM cannot run")
    _RUNS.add(key)


def smallest_arena(model: bytes, source: str = "<model>", keep_all_tensors: bool = False) -> int:
    """The smallest ``arena_size`` with which the real interpreter builds, found by bisection
    (``keep_all_tensors``: in TFLM's preserve-all-tensors mode, as a keep-tensors firmware runs)."""
    try:
        out = _call("smallest", {"model": np.frombuffer(model, dtype=np.uint8),
                                 "keep_all": np.array([keep_all_tensors])})
    except TflmCrash as e:
        raise _explain_crash(e, source) from None
    return int(out["smallest"][0])


def allocations(model: bytes, arena_size: int | None = None, source: str = "<model>") -> Allocations:
    try:
        out = _call("allocations", {"model": np.frombuffer(model, dtype=np.uint8),
                                    "arena": np.array(arena_size or DEFAULT_RUN_ARENA)})
    except TflmCrash as e:
        raise _explain_crash(e, source) from None
    return parse_allocations(str(out["text"]))


def parse_allocations(text: str) -> Allocations:
    def grab(label: str) -> int:
        m = re.search(rf"Arena allocation {label} (\d+) bytes", text)
        return int(m.group(1)) if m else 0

    buckets = {m.group(1): int(m.group(2)) for m in re.finditer(r"'([^']+)' used (\d+) bytes", text)}
    return Allocations(grab("total"), grab("head"), grab("tail"), buckets)


# ---- the child process -------------------------------------------------------------------------------


def _interpreter(model: bytes, arena: int, keep_all: bool = False):
    """``keep_all``: TFLM's preserve-all-tensors mode, as a keep-tensors firmware runs."""
    from tflite_micro import runtime

    if keep_all:  # the wheel's keyword is spelled so
        return runtime.Interpreter.from_bytes(model, arena_size=int(arena),
                                              intrepreter_config=runtime.InterpreterConfig.kPreserveAllTensors)
    return runtime.Interpreter.from_bytes(model, arena_size=int(arena))


def _try_build(model: bytes, arena: int, keep_all: bool = False) -> bool:
    """Build in a forked process: after a failed Prepare, TFLM's allocator state can crash the next build
    in the same process (seen: "All temp buffers must be freed before calling ResetTempAllocations()")."""
    pid = os.fork()
    if pid == 0:  # the child: exit code says whether it built; never return into Python's stack
        code = 1
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            _interpreter(model, arena, keep_all)
            code = 0
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def _smallest(model: bytes, keep_all: bool = False) -> int:
    hi = max(4096, 16 * len(model))
    # One build here first: the interpreter's one-time start-up (~0.2 s) is then inherited by every forked
    # trial instead of being paid in each. A model that fails even with this arena fails the search anyway.
    _interpreter(model, hi * 4, keep_all)
    while not _try_build(model, hi, keep_all):
        if hi > 1 << 31:
            raise RuntimeError("the model does not build even with a 2 GB arena")
        hi *= 2
    lo = 0  # invariant: lo fails, hi builds
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _try_build(model, mid, keep_all):
            hi = mid
        else:
            lo = mid
    return hi


def _capture_c_output(fn) -> str:
    """What C code writes to stdout and stderr (file descriptors 1 and 2) while ``fn`` runs."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile(mode="w+b") as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:
            fn()
        finally:
            for fd, copy in zip((1, 2), saved, strict=True):
                os.dup2(copy, fd)
                os.close(copy)
        f.seek(0)
        return f.read().decode(errors="replace")


def _child(command: str, req_path: str, resp_path: str) -> None:
    with np.load(req_path, allow_pickle=False) as z:
        req = {k: z[k] for k in z.files}
    model = req["model"].tobytes()
    if command == "run":
        it = _interpreter(model, int(req["arena"]))
        inputs = [req[f"in{i}"] for i in range(len([k for k in req if k.startswith("in")]))]
        n = len(inputs[0])
        from ..graph import read_graph

        n_out = len(read_graph(model).main.outputs)
        outs: list[list[np.ndarray]] = []
        for s in range(n):
            for i, x in enumerate(inputs):
                it.set_input(x[s:s + 1], i)
            it.invoke()
            results = [np.array(it.get_output(k)) for k in range(n_out)]
            outs.append(results)
        np.savez(resp_path, **{f"out{k}": np.concatenate([o[k] for o in outs]) for k in range(len(outs[0]))})
    elif command == "check":
        # A refusal is an answer, not a crash: report TFLM's words (its C log, then the Python error).
        failures: list[BaseException] = []

        def build_and_invoke() -> None:
            try:
                it = _interpreter(model, int(req["arena"]))
                from ..graph import read_graph

                for i in range(len(read_graph(model).main.inputs)):
                    d = it.get_input_details(i)
                    it.set_input(np.zeros(d["shape"], dtype=d["dtype"]), i)
                it.invoke()
            except Exception as e:  # the runtime raises RuntimeError/ValueError with TFLM's status
                failures.append(e)

        log = _capture_c_output(build_and_invoke)
        error = ""
        if failures:
            said = [ln.strip() for ln in log.splitlines() if ln.strip()]
            error = "; ".join(dict.fromkeys([*said[-2:], first_line(failures[0])]))[:400]
        np.savez(resp_path, error=np.array(error))
    elif command == "builds":
        np.savez(resp_path, ok=np.array([_try_build(model, int(req["arena"][0]))]))
    elif command == "smallest":
        keep_all = bool(req["keep_all"][0]) if "keep_all" in req else False
        np.savez(resp_path, smallest=np.array([_smallest(model, keep_all)]))
    elif command == "allocations":
        it = _interpreter(model, int(req["arena"]))
        text = _capture_c_output(it.print_allocations)
        np.savez(resp_path, text=np.array(text))
    else:
        raise SystemExit(f"unknown command {command}")

