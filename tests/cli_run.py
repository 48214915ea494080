"""The closedloop command run as a user runs it: a subprocess on a given home."""

from __future__ import annotations

import os
import subprocess
import sys


def run_cli(
    *args: str, home, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    environment = {**os.environ, "CLOSEDLOOP_HOME": str(home), "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "closedloop", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=timeout,
    )
