"""A warm container for local SageMaker jobs: one Python process with the image's framework imported, forked per job.

A job's script runs as `python <program> <args>` (or `python -m <module> <args>`) would run it: in a process of its
own, with its argv, working folder, environment, `sys.path` and exit status, its output appended to the job's log.
Starting that process cold costs the framework's imports (pandas, scikit-learn, pyarrow: seconds on a small machine)
on every job, twice per forecast (training, then the batch transform). So the container process imports them once,
when the box's SageMaker is first wired into an executor, and each job is a `fork()` of it: a fresh process that
finds those modules loaded and nothing else of any earlier job. The scripts are the ones SageMaker runs, unchanged.

The protocol is JSON lines: the container says `{"ready": [modules]}` once it has imported them; for each request
(`{"command", "cwd", "env", "log"}`) it answers `{"pid"}` when the job's process starts and `{"pid", "returncode"}`
when it ends (a negative code for a signal, -9 when killed for outliving its time limit, as `subprocess` reports).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import runpy
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[2]

SCIKIT_LEARN_FRAMEWORK: tuple[str, ...] = (
    "numpy",
    "pandas",
    "pyarrow.parquet",
    "scipy.optimize",
    "sklearn.linear_model",
    "joblib",
)
"""What the SageMaker scikit-learn image's container holds imported before a job's script runs (the framework)."""
ONE_BLAS_THREAD: Mapping[str, str] = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
"""Thread counts of the numeric libraries, read once when they are imported. A job's BLAS calls are tiny (a few
dozen rows): on a machine whose cores are busy with Spark, OpenBLAS's worker threads spin waiting for each other and
the same fit takes ten times longer, with the same numbers (measured: bit-identical coefficients and forecasts)."""


def job_environment() -> dict[str, str]:
    """The environment a local job starts from: this process's, with one BLAS thread unless it sets a count."""
    return {**ONE_BLAS_THREAD, **os.environ}


@dataclass
class WarmContainer:
    """The warm container process of one local SageMaker, started by `warm()` and ended by `close()`.

    `run()` runs one job in it; it answers `None` when the container cannot take the job (not started, busy with
    another job, or gone), and the caller runs the job in a cold process instead, with the same outcome.
    """

    python: str = sys.executable
    env: Mapping[str, str] = field(default_factory=job_environment)
    modules: tuple[str, ...] = SCIKIT_LEARN_FRAMEWORK
    served: int = 0
    """Jobs run in the container so far."""
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _pending: bytes = field(default=b"", repr=False)
    _ready: bool = field(default=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def warm(self) -> None:
        """Start the container process (its imports run in the background) unless it is running."""
        with self._lock:
            if self._process is not None and self._process.poll() is None:
                return
            path = os.pathsep.join(filter(None, [str(REPO), self.env.get("PYTHONPATH")]))
            env = {**self.env, "PYTHONPATH": path}
            self._process = subprocess.Popen(
                [self.python, "-m", "lakebox.services.sagemaker_container", *self.modules],
                cwd=REPO,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
            self._pending, self._ready = b"", False

    def close(self) -> None:
        """End the container process (a job running in it is killed)."""
        with self._lock:
            process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def run(self, command: Sequence[str], cwd: Path, env: Mapping[str, str], log: Path, timeout: float) -> int | None:
        """Run `command` (`python <program> ...` or `python -m <module> ...`) in a fork of the container.

        Returns its exit status (-9 when it outlived `timeout` seconds and was killed), or `None` when the container
        took no job: the caller then runs it cold. A job whose environment gives the numeric libraries other thread
        counts than the container imported them with runs cold too.
        """
        if any(env.get(name) != self.env.get(name) for name in ONE_BLAS_THREAD):
            return None
        if not self._lock.acquire(blocking=False):
            return None
        try:
            process = self._process
            if process is None or process.poll() is not None or process.stdin is None:
                return None
            deadline = time.monotonic() + timeout
            if not self._ready:
                ready = self._read(process, deadline)
                if ready is None or "ready" not in ready:
                    self._abandon()
                    return None
                self._ready = True
            request = {"command": list(command), "cwd": str(cwd), "env": dict(env), "log": str(log)}
            try:
                process.stdin.write(json.dumps(request).encode("utf-8") + b"\n")
                process.stdin.flush()
            except OSError:
                self._abandon()
                return None
            started = self._read(process, deadline)
            if started is None or "pid" not in started:
                self._abandon()
                return None
            ended = self._read(process, deadline)
            if ended is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(started["pid"]), signal.SIGKILL)
                ended = self._read(process, time.monotonic() + 30)
                if ended is None:
                    self._abandon()
                self.served += 1
                return -9
            self.served += 1
            return int(ended["returncode"])
        finally:
            self._lock.release()

    def _abandon(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.wait()

    def _read(self, process: subprocess.Popen[bytes], deadline: float) -> dict[str, Any] | None:
        """The container's next message, or `None` when it is gone or `deadline` passed first."""
        assert process.stdout is not None
        fd = process.stdout.fileno()
        while b"\n" not in self._pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        message: dict[str, Any] = json.loads(line)
        return message


# ------------------------------------------------------------------------------------- the container process


def _job(request: Mapping[str, Any], site: list[str]) -> int:
    """In the forked process: become `python <program> ...` of the request and run it; return its exit status."""
    command = list(request["command"])[1:]
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.close(null)
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8", write_through=True)
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8", write_through=True)
    extra = [p for p in request["env"].get("PYTHONPATH", "").split(os.pathsep) if p]
    try:
        if command[0] == "-m":
            sys.argv = command[1:]
            sys.path[:] = [os.getcwd(), *extra, *site]
            runpy.run_module(command[1], run_name="__main__", alter_sys=True)
        else:
            program = os.path.abspath(command[0])
            sys.argv = command
            sys.path[:] = [os.path.dirname(program), *extra, *site]
            runpy.run_path(command[0], run_name="__main__")  # sets argv[0] to the path as given, as `python` does
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    except BaseException:  # noqa: BLE001 - whatever the script raises ends it as the interpreter would: traceback, 1
        traceback.print_exc()
        return 1
    return 0


def _serve(modules: list[str]) -> None:
    """The container's loop: import the framework, then fork one process per request and report how it ended."""
    protocol: IO[str] = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    quiet = os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 1)
    ours = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    site = [p for p in sys.path[1:] if p not in ours]
    loaded = []
    for module in modules:
        try:
            importlib.import_module(module)
            loaded.append(module)
        except ImportError:
            continue
    protocol.write(json.dumps({"ready": loaded}) + "\n")
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                protocol.close()
                code = _job(request, site)
            finally:
                for stream in (sys.stdout, sys.stderr):
                    with contextlib.suppress(OSError, ValueError):
                        stream.flush()
                os._exit(code & 0xFF)
        protocol.write(json.dumps({"pid": pid}) + "\n")
        _, status = os.waitpid(pid, 0)
        returncode = os.waitstatus_to_exitcode(status)
        protocol.write(json.dumps({"pid": pid, "returncode": returncode}) + "\n")


if __name__ == "__main__":
    _serve(sys.argv[1:])
