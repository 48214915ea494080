"""The whole loop in one command, run as a user runs it: ``closedloop demo``."""

import re
from collections import Counter

from cli_run import run_cli

from actions.backends import open_ledger
from actions.ledger import Status
from closedloop.settings import Settings
from closedloop.world.store import read_summary

NOISE = re.compile(
    r"warning|deprecat|Downloading artifacts|Successfully registered|Created version '|"
    r"it/s\]|Traceback",
    re.IGNORECASE,
)


def row(table: str, title: str, count: int) -> bool:
    """Whether ``table`` (rich text) has a row ``title`` whose count is ``count``."""
    return re.search(rf"│\s+{re.escape(title)}\s+│\s+{count:,}\s+│", table) is not None


def test_demo_runs_the_loop_and_its_summary_is_the_ledgers(tmp_path, free_port):
    port = {"CLOSEDLOOP_SERVE_PORT": str(free_port())}
    demo = ("demo", "--customers", "1500", "--days", "50")
    result = run_cli(*demo, home=tmp_path, env=port, timeout=1800)  # the whole loop, on 2 cores
    assert result.returncode == 0, result.stderr
    assert read_summary(tmp_path / "world").customers == 1500
    stages = (
        "1. world",
        "2. ingest",
        "3. features",
        "4. training",
        "5. serving",
        "6. actions",
        "7. monitoring",
        "8. value",
    )
    for stage in stages:
        assert stage in result.stdout
    assert "churn v1 via churn_v1" in result.stdout and "(raises the risk)" in result.stdout
    assert list((tmp_path / "predictions" / "churn").glob("part-*.parquet"))
    assert "dirt injected" in result.stdout and "quarantined" in result.stdout
    assert "churn model version 1" in result.stdout and "fault model version 1" in result.stdout
    assert (tmp_path / "metrics" / "train_churn.json").is_file()
    assert "again: 0 new decisions" in result.stdout and "intact" in result.stdout
    assert list((tmp_path / "drift-episode" / "monitoring" / "fault").glob("*/drift.html"))
    for policy in ("no action", "top-k churn score", "uplift (net gain)", "oracle (true effects)"):
        assert policy in result.stdout, f"the net-value table has no row {policy!r}"

    closing = result.stdout.split(" summary ─", 1)[1]
    ledger = open_ledger(Settings(home=tmp_path))
    try:
        counts, guards = ledger.counts(), ledger.suppressed_by_guard()
        events = ledger.read().value("SELECT COUNT(*) FROM events")
    finally:
        ledger.close()
    taken = Counter()
    for (action, status), n in counts.items():
        if status not in (Status.SUPPRESSED, Status.HELD_OUT):
            taken[action] += n
    held_out = sum(n for (_, status), n in counts.items() if status == Status.HELD_OUT)
    waiting = sum(n for (_, status), n in counts.items() if status == Status.AWAITING_APPROVAL)
    dispatched = sum(n for (_, status), n in counts.items() if status == Status.DISPATCHED)
    assert waiting >= 1 and dispatched >= 1, "some actions run, some wait for a person"
    assert row(closing, "events (each once)", events)
    assert row(closing, "actions", sum(taken.values()))
    for action, n in taken.items():
        assert row(closing, action, n), f"the summary's {action} count is not the ledger's {n}"
    assert row(closing, "suppressed by guard", sum(guards.values()))
    for guard, n in guards.items():
        assert row(closing, guard, n)
    assert row(closing, "held out (control group)", held_out)
    assert row(closing, "waiting for approval", waiting)
    assert "value at risk addressed:" in closing and "the demo took" in closing

    assert "/console/" in closing and "closedloop console" in closing
    assert "mlflow ui --backend-store-uri" in closing and "evidently ui --workspace" in closing
    assert "until Ctrl-C" not in result.stdout, "without a terminal the demo does not serve"
    noise = [line for line in (result.stdout + result.stderr).splitlines() if NOISE.search(line)]
    assert not noise, f"third-party noise in the demo's output: {noise[:5]}"


def test_demo_refuses_a_world_too_short_to_train_on(tmp_path):
    result = run_cli("demo", "--days", "20", home=tmp_path)
    assert result.returncode == 2 and "too short" in result.stderr
