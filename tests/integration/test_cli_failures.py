"""Failures a user meets, run as a user runs the command: a step skipped, PostgreSQL down, the
ledger held by another process. Each is one red line naming the fix, exit code 2, in seconds."""

from __future__ import annotations

import sqlite3
import time

import pytest
from cli_run import run_cli

DOWN = {"CLOSEDLOOP_PROFILE": "cluster", "CLOSEDLOOP_POSTGRES_DSN": "postgresql://u@127.0.0.1:9/x"}


def one_red_line(result, message: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["features", "build"], {}, "no customers or cells in the offline store"),
        (["features", "materialize"], {}, "run 'closedloop features build' first"),
        (["models", "list"], {}, "no registered models yet"),
        (["models", "list"], DOWN, "cannot reach PostgreSQL"),
        (["audit", "verify"], DOWN, "cannot reach PostgreSQL"),
        (["actions", "list"], DOWN, "start it or fix CLOSEDLOOP_POSTGRES_DSN"),
    ],
)
def test_a_missing_step_or_a_server_down_is_one_line_naming_the_fix(tmp_path, args, env, message):
    one_red_line(run_cli(*args, home=tmp_path, env=env), message)


def test_a_ledger_held_by_another_process_is_one_line_after_the_busy_timeout(tmp_path):
    assert run_cli("events", "rejected", home=tmp_path).returncode == 0  # the ledger exists
    holder = sqlite3.connect(tmp_path / "ledger.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        began = time.monotonic()
        result = run_cli(
            "actions", "list", home=tmp_path, env={"CLOSEDLOOP_LEDGER_BUSY_SECONDS": "1"}
        )
        took = time.monotonic() - began
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    one_red_line(result, "the ledger is busy")
    assert "try again" in result.stderr and took < 120
