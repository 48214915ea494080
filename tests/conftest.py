"""Shared fixtures: small generated worlds, written once per test session."""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from closedloop.openmp import spin_briefly
from closedloop.settings import Settings
from closedloop.world.config import WorldConfig
from closedloop.world.simulate import World, simulate
from closedloop.world.store import write_world

spin_briefly()  # as the command line does, before any test loads LightGBM


@pytest.fixture(autouse=True, scope="session")
def wide_consoles():
    """CLI output unwrapped in every test process: xdist workers set COLUMNS=80, which rich
    reads once, when the consoles are made."""
    from closedloop.terminal import console, err_console

    console.width = err_console.width = 250


SMALL = WorldConfig(customers=4_000, days=60, seed=7, customers_per_cell=40)


@pytest.fixture(scope="session")
def small_world() -> World:
    """A 4,000-customer, 100-cell, 60-day world held in memory."""
    return simulate(SMALL)


@pytest.fixture(scope="session")
def small_world_dir(small_world: World, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same world written to disk."""
    folder = tmp_path_factory.mktemp("home") / "world"
    write_world(small_world, folder)
    return folder


def prepared_home(home: Path, config: WorldConfig) -> Settings:
    """A home with ``config``'s world generated, ingested, built into features and applied."""
    from features.ingest import ingest_world
    from features.pipeline import apply_repository, build_features

    end = datetime.combine(config.start, datetime.min.time(), UTC) + timedelta(days=config.days)
    write_world(simulate(config), home / "world")
    ingest_world(home / "world", home, end)
    build_features(home, end)
    settings = Settings(home=home)
    apply_repository(settings)
    return settings


def serving_home(folder: Path, config: WorldConfig, end: datetime, lightgbm) -> Settings:
    """A prepared home with its online store loaded up to ``end`` and both champions registered
    (trained with ``lightgbm``, the test's fast parameters)."""
    from features.pipeline import materialize
    from training.config import churn_defaults, fault_defaults
    from training.pipeline import train

    settings = prepared_home(folder, config)
    materialize(settings, end - timedelta(days=config.days + 1), end, stock=False)
    for target, defaults in (("churn", churn_defaults), ("fault", fault_defaults)):
        outcome = train(settings, target, defaults().model_copy(update={"lightgbm": lightgbm}))
        assert outcome.decision.promote, outcome.decision.reasons
    return settings


@pytest.fixture(scope="session")
def prepare_serving():
    """Build a home ready to serve: ``prepare_serving(folder, config, end, lightgbm)``."""
    return serving_home


@pytest.fixture(scope="session")
def prepare():
    """Build a prepared home: ``prepare(folder, config) -> Settings``."""
    return prepared_home


def unused_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def free_port():
    """``free_port() -> int``: a port for a service a test starts."""
    return unused_port


class Receiver:
    """A real HTTP receiver on 127.0.0.1 standing in for a ticketing, SMS or billing system.

    Each path answers 503 for its first ``failures[path]`` requests (``-1``: always), then 201;
    every request is recorded with its ``Idempotency-Key`` header and JSON body. While
    ``stalled`` is set, a request hangs until :meth:`close` and is then dropped unrecorded (a
    receiver too slow to answer), counted in ``stalls``.
    """

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.failures: dict[str, int] = {}
        self.received: list[tuple[str, str, dict]] = []  # (path, key, body) of each 2xx answer
        self.attempts: dict[str, int] = {}
        self.stalled, self.stalls = False, 0
        self._closing = threading.Event()
        lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                import json

                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if receiver.stalled:
                    with lock:
                        receiver.stalls += 1
                    receiver._closing.wait()
                    return
                with lock:
                    receiver.attempts[self.path] = receiver.attempts.get(self.path, 0) + 1
                    left = receiver.failures.get(self.path, 0)
                    if left != 0:
                        receiver.failures[self.path] = left - 1 if left > 0 else left
                        status = 503
                    else:
                        receiver.received.append((self.path, self.headers["Idempotency-Key"], body))
                        status = 201
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def keys(self, path: str | None = None) -> list[str]:
        return [key for p, key, _ in self.received if path is None or p == path]

    def close(self) -> None:
        self._closing.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    """A running :class:`Receiver`; set ``receiver.failures["/path"] = n`` to make it fail."""
    running = Receiver()
    yield running
    running.close()


CLUSTER_SERVERS = {"PostgreSQL": ("127.0.0.1", 5432), "Redis": ("127.0.0.1", 6379)}


def _unreachable() -> list[str]:
    missing = []
    for name, address in CLUSTER_SERVERS.items():
        try:
            socket.create_connection(address, timeout=1).close()
        except OSError:
            missing.append(f"{name} at {address[0]}:{address[1]}")
    return missing


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests under tests/cluster/ (marked ``cluster`` here) and any other test marked
    ``cluster`` need the cluster profile's servers: skipped with the reason when one is down,
    except in CI (``CI`` set), where the servers run and a skip would hide a failure."""
    cluster = Path(__file__).parent / "cluster"
    for item in items:
        if cluster in Path(item.fspath).parents:
            item.add_marker(pytest.mark.cluster)
    chosen = [item for item in items if item.get_closest_marker("cluster")]
    if not chosen or os.environ.get("CI"):
        return
    missing = _unreachable()
    if missing:
        skip = pytest.mark.skip(reason=f"cluster servers not reachable: {', '.join(missing)}")
        for item in chosen:
            item.add_marker(skip)
