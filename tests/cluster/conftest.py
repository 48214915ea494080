"""Fixtures of the cluster profile's tests: the packaged action policy."""

from __future__ import annotations

import pytest

from actions.policy import Policy, load_policy


@pytest.fixture(scope="session")
def policy() -> Policy:
    return load_policy(None)
