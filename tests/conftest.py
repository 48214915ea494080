"""Shared fixtures: small generated worlds, written once per test session."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from closedloop.settings import Settings
from closedloop.world.config import WorldConfig
from closedloop.world.simulate import World, simulate
from closedloop.world.store import write_world

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
