"""Start and stop the BentoML service as its own process (``closedloop serve``, demo, tests)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

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
    quiet = {"BENTOML_DO_NOT_TRACK": "true", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
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
    return {**os.environ, **settings.environment(), **quiet, **bentoml}


@dataclass
class RunningService:
    process: subprocess.Popen
    url: str
    log_path: Path

    def stop(self, timeout: float = 30) -> int:
        """Graceful shutdown (SIGTERM), as a process manager would; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

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
