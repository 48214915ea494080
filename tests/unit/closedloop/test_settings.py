from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from closedloop.settings import Profile, Settings


def test_defaults_are_embedded_under_var(monkeypatch):
    for name in ("CLOSEDLOOP_PROFILE", "CLOSEDLOOP_HOME"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.profile is Profile.EMBEDDED
    assert settings.home == Path("var")
    assert settings.world_dir == Path("var/world").resolve()


def test_environment_overrides(monkeypatch, tmp_path):
    monkeypatch.setenv("CLOSEDLOOP_PROFILE", "cluster")
    monkeypatch.setenv("CLOSEDLOOP_HOME", str(tmp_path))
    settings = Settings()
    assert settings.profile is Profile.CLUSTER
    assert settings.world_dir == tmp_path / "world"


def test_bad_profile_is_rejected(monkeypatch):
    monkeypatch.setenv("CLOSEDLOOP_PROFILE", "kubernetes")
    with pytest.raises(ValidationError, match="profile"):
        Settings()


def test_unknown_setting_is_rejected():
    with pytest.raises(ValidationError, match="homedir"):
        Settings(homedir="x")


def test_embedded_profile_needs_no_server(tmp_path):
    backends = Settings(home=tmp_path).backends()
    described = " ".join(backends.model_dump().values())
    assert "redis" not in described
    assert "postgresql" not in described
    assert str(tmp_path) in backends.ledger


def test_cluster_profile_uses_postgres_and_redis_and_hides_passwords():
    settings = Settings(
        profile="cluster",
        postgres_dsn=SecretStr("postgresql://ops:hunter2@db:5432/closedloop"),
        redis_url="redis://cache:6379/1",
    )
    backends = settings.backends()
    assert backends.online_store.startswith("redis ")
    assert backends.ledger.startswith("postgresql ")
    assert "hunter2" not in " ".join(backends.model_dump().values())
    assert "ops:***@db:5432" in backends.ledger
