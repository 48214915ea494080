from pathlib import Path

import pytest
from pydantic import ValidationError

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
