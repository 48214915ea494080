"""``closedloop actions retry --all`` against a dead endpoint, with and without its circuit breaker.

    python -m bench.delivery_faults [--customers 100] [--peer-customers 1]

Two endpoints that do not work: a port nothing listens on, and one that accepts connections and
never answers. For each, a temporary home holds the actions the packaged policy decides for an
outage on a cell of CUSTOMERS customers, dead-lettered by a first dispatch to that endpoint, and
the command a user runs, ``closedloop actions retry --all``, is timed as a subprocess with the
default delivery settings (3 retries, 0.5 s first backoff, 5 s timeout). The peer is the same
command with the circuit breaker out of reach (``CLOSEDLOOP_ACTION_CIRCUIT_FAILURES`` =
1,000,000), as it ran before there was one: each delivery then waits out its retries and
timeouts, so it runs on a cell of PEER_CUSTOMERS. Times per action are net of the command's
start-up (the same command with nothing to retry, timed first); the peer's time per action is
also multiplied out to the breaker run's actions, marked as projected.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.table import Table

from actions.backends import open_ledger
from actions.ledger import Status
from actions.policy import ActionType, load_policy
from actions.processor import Directory, Processor
from actions.runtime import open_dispatcher
from bench.actions import FixedScores, customers, onset
from closedloop.settings import Settings

PROJECT = Path(__file__).resolve().parent.parent
OFF = 1_000_000  # consecutive failures: a circuit that never opens
console = Console()


@contextmanager
def endpoint(kind: str) -> Iterator[str]:
    """The URL of a dead endpoint: ``refused`` (nothing listens) or ``hanging``."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        port = server.getsockname()[1]
        if kind == "hanging":
            server.listen(4096)  # connections wait in the backlog, never accepted
            yield f"http://127.0.0.1:{port}/receiver"
            return
    yield f"http://127.0.0.1:{port}/receiver"  # the port closed: connections are refused


def dead_letters(home: Path, url: str, actions: int) -> int:
    """A home whose ledger holds about ``actions`` actions dead-lettered at ``url``."""
    settings = Settings(home=home, action_endpoints={a.value: url for a in ActionType})
    people = customers(1, actions, "bench")
    ledger = open_ledger(settings)
    try:
        processor = Processor(ledger, load_policy(None), Directory.of(people), FixedScores(people))
        processor.process(onset(people[0].cell_id, 0))
    finally:
        ledger.close()
    with open_dispatcher(settings) as dispatcher:
        return dispatcher.drain()[Status.DEAD_LETTER]


def retry_all(home: Path, url: str, failures: int | None) -> tuple[float, str]:
    """Wall seconds of ``closedloop actions retry --all`` and its last lines."""
    env = {
        **os.environ,
        "CLOSEDLOOP_HOME": str(home),
        "CLOSEDLOOP_ACTION_ENDPOINTS": json.dumps({a.value: url for a in ActionType}),
        "COLUMNS": "200",
    }
    env.pop("CLOSEDLOOP_API_KEY", None)  # the local admin, as on the operator's own machine
    if failures is not None:
        env["CLOSEDLOOP_ACTION_CIRCUIT_FAILURES"] = str(failures)
    command = [sys.executable, "-m", "closedloop", "actions", "retry", "--all", "--note", "bench"]
    began = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=PROJECT, capture_output=True, text=True)
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"retry --all failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return seconds, done.stdout


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100, help="customers of the outage")
    parser.add_argument("--peer-customers", type=int, default=1, help="the same, no breaker")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="closedloop-bench-delivery-") as tmp:
        empty = Path(tmp) / "empty"
        empty.mkdir()
        with endpoint("refused") as url:
            start_up, _ = retry_all(empty, url, None)
        console.print(f"start-up of the command with nothing to retry: {start_up:.1f} s")
        table = Table(title="actions retry --all against a dead endpoint (default settings)")
        for column in ("endpoint", "breaker", "actions", "seconds", "net s / action", "progress"):
            table.add_column(column)
        net: dict[tuple[str, bool], float] = {}
        counts: dict[str, int] = {}
        for kind in ("refused", "hanging"):
            for breaker, size in ((True, args.customers), (False, args.peer_customers)):
                home = Path(tmp) / f"{kind}-{breaker}"
                with endpoint(kind) as url:
                    dead = dead_letters(home, url, size)
                    seconds, output = retry_all(home, url, None if breaker else OFF)
                progress = sum(1 for line in output.splitlines() if f"/{dead:,}: " in line)
                net[kind, breaker] = max(seconds - start_up, 0.0) / dead
                if breaker:
                    counts[kind] = dead
                table.add_row(
                    kind, "on" if breaker else "off", f"{dead:,}", f"{seconds:.1f}",
                    f"{net[kind, breaker]:.3f}", f"{progress} lines",
                )  # fmt: skip
    console.print(table)
    for kind in ("refused", "hanging"):
        on, off = net[kind, True], net[kind, False]
        console.print(
            f"{kind}: {counts[kind]:,} actions in {on * counts[kind]:.1f} s with the breaker "
            f"(net of start-up); without it {off * counts[kind] / 60:,.1f} min (projected), "
            f"{off / on if on else float('inf'):,.0f}× more time per action"
        )


if __name__ == "__main__":
    main()
