"""Fixtures of the cluster profile's tests: the packaged action policy, a PostgreSQL database
and a Redis database of the test's own."""

from __future__ import annotations

import os
import uuid

import psycopg
import pytest
import redis

from actions.policy import Policy, load_policy

SERVER = "postgresql://postgres@127.0.0.1:5432"


@pytest.fixture(scope="session")
def policy() -> Policy:
    return load_policy(None)


@pytest.fixture
def database():
    name = f"closedloop_test_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield f"{SERVER}/{name}"
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
def redis_db(worker_id):
    """A Redis database of this test process's own (Feast's keys carry no prefix of ours),
    emptied before and after the test. ``CLOSEDLOOP_TEST_REDIS_DB`` moves the first number (10)
    so that two test runs on one machine keep apart."""
    first = int(os.environ.get("CLOSEDLOOP_TEST_REDIS_DB", "10"))
    number = first + (int(worker_id.removeprefix("gw")) if worker_id.startswith("gw") else 0)
    client = redis.Redis(host="127.0.0.1", port=6379, db=number)
    client.flushdb()
    yield f"redis://127.0.0.1:6379/{number}"
    client.flushdb()
