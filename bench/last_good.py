"""Time to ready of ``closedloop serve`` with the registry's champion out of reach.

    python -m bench.last_good [--customers 2000] [--rounds 1]

A home with a churn champion registered (``bench.serving``'s world) is served three ways, each
timed from launch to the first ``/readyz`` 200 and asked which version it serves and from where:
the registry as it is (the peer), the MLflow store removed (MLflow makes a new, empty one) and
the ``champion`` alias deleted. The last two serve the last good copy from the disk cache that
the first start wrote; the ratio to the peer is printed.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from bench.serving import free_port, prepare_home, viewer_key
from closedloop.settings import Settings
from serving.process import start_service
from training import registry

console = Console()


@contextmanager
def as_is(settings: Settings) -> Iterator[None]:
    yield


@contextmanager
def store_removed(settings: Settings) -> Iterator[None]:
    database = settings.paths.mlflow_db
    kept = database.with_suffix(".kept")
    database.rename(kept)
    try:
        yield
    finally:
        for leftover in database.parent.glob("mlflow.db*"):
            leftover.unlink()
        kept.rename(database)


@contextmanager
def alias_deleted(settings: Settings) -> Iterator[None]:
    client = registry.connect(settings)
    version = client.get_model_version_by_alias("churn", registry.CHAMPION).version
    client.delete_registered_model_alias("churn", registry.CHAMPION)
    try:
        yield
    finally:
        client.set_registered_model_alias("churn", registry.CHAMPION, version)


def time_to_ready(settings: Settings, auth: dict[str, str]) -> tuple[float, dict]:
    """Seconds from launch to ready, and the churn model's health then."""
    served = settings.model_copy(update={"serve_port": free_port()})
    began = time.perf_counter()
    running = start_service(served)
    seconds = time.perf_counter() - began
    try:
        health = httpx.get(f"{running.url}/status/health", headers=auth, timeout=30).json()
    finally:
        running.stop()
    return seconds, health["models"]["churn"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=1, help="starts per way; median shown")
    args = parser.parse_args(argv)
    ways: dict[str, Callable] = {
        "registry as it is": as_is,
        "MLflow store removed": store_removed,
        "champion alias deleted": alias_deleted,
    }
    with tempfile.TemporaryDirectory(prefix="closedloop-bench-last-good-") as tmp:
        settings, _ = prepare_home(Path(tmp), args.customers)
        auth = viewer_key(settings)
        seconds: dict[str, list[float]] = {name: [] for name in ways}
        models: dict[str, dict] = {}
        for _ in range(args.rounds):
            for name, way in ways.items():  # side by side, alternately
                with way(settings):
                    took, models[name] = time_to_ready(settings, auth)
                seconds[name].append(took)
    table = Table(title="closedloop serve: launch to ready")
    for column in ("registry", "seconds (median)", "churn version", "source", "reason"):
        table.add_column(column)
    peer = statistics.median(seconds["registry as it is"])
    for name in ways:
        model = models[name]
        table.add_row(
            name, f"{statistics.median(seconds[name]):.1f}", str(model["version"]),
            str(model["source"]), str(model["reason"] or ""),
        )  # fmt: skip
    console.print(table)
    for name in list(ways)[1:]:
        ratio = statistics.median(seconds[name]) / peer
        console.print(f"{name}: ready in {ratio:.2f}× the time with the registry as it is")


if __name__ == "__main__":
    main()
