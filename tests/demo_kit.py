"""What every run of ``closedloop demo`` must show, whatever its profile: each stage, a closing
summary equal to its ledger, and no third-party chatter."""

from __future__ import annotations

import re
from collections import Counter

from actions.ledger import Ledger, Status

STAGES = (
    "1. world",
    "2. ingest",
    "3. features",
    "4. training",
    "5. serving",
    "6. actions",
    "7. monitoring",
    "8. value",
)
NOISE = re.compile(
    r"warning|deprecat|Downloading artifacts|Successfully registered|Created version '|"
    r"it/s\]|Traceback|\[LightGBM\]",
    re.IGNORECASE,
)


def row(table: str, title: str, count: int) -> bool:
    """Whether ``table`` (rich text) has a row ``title`` whose count is ``count``."""
    return re.search(rf"│\s+{re.escape(title)}\s+│\s+{count:,}\s+│", table) is not None


def check_demo_output(stdout: str, stderr: str, ledger: Ledger) -> None:
    """Every stage ran, the closing summary is the ledger's, nothing else talked."""
    for stage in STAGES:
        assert stage in stdout
    closing = stdout.split(" summary ─", 1)[1]
    counts, guards = ledger.counts(), ledger.suppressed_by_guard()
    events = ledger.read().value("SELECT COUNT(*) FROM events")
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
    assert "until Ctrl-C" not in stdout, "without a terminal the demo does not serve"
    noise = [line for line in (stdout + stderr).splitlines() if NOISE.search(line)]
    assert not noise, f"third-party noise in the demo's output: {noise[:5]}"
