"""Start and stop the BentoML service as its own process (``closedloop serve``, demo, tests)."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from closedloop.quiet import QUIET_ENVIRONMENT
from closedloop.settings import Settings

SERVICE = "serving.service:Closedloop"
SERVICE_NAME = "closedloop"  # the name in @bentoml.service, which BentoML's configuration uses
PROJECT = Path(__file__).resolve().parent.parent


def serve_command(settings: Settings) -> list[str]:
    return [
        sys.executable, "-m", "bentoml", "serve", SERVICE,
        "--host", settings.serve_host, "--port", str(settings.serve_port),
    ]  # fmt: skip


def service_environment(settings: Settings) -> dict[str, str]:
    """The service's environment: the settings, and BentoML's own options taken from them."""
    ours: dict = {"workers": settings.serve_workers}
    if settings.cors_origins:  # no CORS headers at all unless origins are configured
        ours["http"] = {"cors": {
            "enabled": True, "access_control_allow_origins": settings.cors_origins,
            "access_control_allow_methods": ["GET", "POST"],
            "access_control_allow_headers": ["Authorization", "Content-Type"],
        }}  # fmt: skip
    workers = {"services": {SERVICE_NAME: ours}}
    bentoml = {
        "BENTOML_CONFIG_OVERRIDES": json.dumps(workers),
        "BENTOML_HOME": str(settings.paths.service_bentoml_home(settings.serve_port)),
    }
    return {**os.environ, **QUIET_ENVIRONMENT, **settings.environment(), **bentoml}


def lightgbm_without_sklearn() -> None:
    """Import LightGBM as if scikit-learn were not installed: its estimator API, which the
    service never uses, would import scikit-learn and SciPy's statistics (most of a worker's
    start). Call it in the worker before anything imports LightGBM; scikit-learn stays
    importable afterwards."""
    if "lightgbm" in sys.modules:
        return
    hidden = sys.modules.setdefault("sklearn", None)  # None: ``import sklearn`` fails
    try:
        import lightgbm  # noqa: F401
    finally:
        if hidden is None:
            del sys.modules["sklearn"]


PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies


def die_with_parent() -> None:
    """Run in the child before exec: SIGTERM it when the process that started it dies, even by
    kill -9, so no orphaned server keeps the port (Linux; elsewhere nothing happens)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux /proc; BentoML's workers run in their own sessions,
    so a process group does not hold them)."""
    found, todo = [], [pid]
    while todo:
        for task in Path(f"/proc/{todo.pop()}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                children = [int(c) for c in task.read_text().split()]
                found += children
                todo += children
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def stop_group(process: subprocess.Popen, timeout: float = 30, known: list[int] = ()) -> int:
    """SIGTERM ``process`` (the BentoML server, which stops its workers), wait up to
    ``timeout`` seconds for it and every process below it to exit, SIGKILL what is left;
    returns its exit code. ``known``: processes seen below it earlier (a worker whose server
    died is no longer below it)."""
    tree = [*descendants(process.pid), *known]
    if process.poll() is None:
        process.terminate()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None and not any(alive(pid) for pid in tree):
            break
        time.sleep(0.2)
    for pid in [process.pid, *tree]:
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    process.wait()
    return process.returncode


class _StopRequestedError(Exception):
    """SIGTERM or SIGINT reached ``closedloop serve``."""


def supervise(settings: Settings, log_path: Path | None = None) -> int:
    """Run the service in the foreground until it exits or this process gets SIGTERM/SIGINT;
    either way every process it started is stopped (the server and its workers), and if this
    process is killed outright its server gets SIGTERM (its workers too, when the server dies).
    The service writes to ``log_path`` if given, else to this terminal. Returns the service's
    exit code."""

    def stop(signum, frame) -> None:
        raise _StopRequestedError

    out = None
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        out = log_path.open("w")
    with out or contextlib.nullcontext():
        process = subprocess.Popen(
            serve_command(settings),
            env=service_environment(settings),
            cwd=PROJECT,
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
            start_new_session=True,  # Ctrl-C reaches this process only, which stops the server
            preexec_fn=die_with_parent,
        )
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    known: list[int] = []
    try:
        while process.poll() is None:
            known = sorted({*known, *descendants(process.pid)})
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(1)
        code = process.returncode
    except _StopRequestedError:
        code = 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        stop_group(process, known=known)  # also the workers of a server that died by itself
    return code


@dataclass
class RunningService:
    process: subprocess.Popen
    url: str
    log_path: Path

    def stop(self, timeout: float = 30) -> int:
        """Graceful shutdown (SIGTERM to the server and its workers), as a process manager
        would; returns the exit code."""
        return stop_group(self.process, timeout)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def start_service(settings: Settings, ready_within: float = 90) -> RunningService:
    """Launch the service in the background and wait until it reports ready."""
    log_path = settings.paths.service_log(settings.serve_port)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as out:
        process = subprocess.Popen(
            serve_command(settings),
            env=service_environment(settings),
            cwd=PROJECT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://{settings.serve_host}:{settings.serve_port}"
    return wait_ready(RunningService(process, url, log_path), ready_within)


def wait_ready(running: RunningService, within: float) -> RunningService:
    """``running`` once it answers ready; stopped, with its log in the error, if it exits or is
    not ready ``within`` seconds."""
    process = running.process
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the service exited ({process.returncode}):\n{running.log_text()}")
        try:
            if httpx.get(f"{running.url}/readyz", timeout=1).status_code == 200:
                return running
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    running.stop()
    raise RuntimeError(f"the service was not ready within {within} s:\n{running.log_text()}")
