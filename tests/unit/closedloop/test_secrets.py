"""Secrets come from the environment and stay there: no generated file, no `closedloop settings`
output and no log line shows a password or the audit key."""

from __future__ import annotations

import logging
import stat

import pytest
from typer.testing import CliRunner

from closedloop.cli import app
from closedloop.settings import Settings, redact_logs
from features.backends import POSTGRES_PASSWORD, REDIS_PASSWORD, feast_config

SECRETS = {
    "CLOSEDLOOP_PROFILE": "cluster",
    "CLOSEDLOOP_POSTGRES_DSN": "postgresql://ops:hunter2-pg@db:5432/closedloop",
    "CLOSEDLOOP_REDIS_URL": "redis://:sesame-redis@cache:6380/1",
    "CLOSEDLOOP_AUDIT_KEY": "audit-key-that-is-secret-0042",
}
PASSWORDS = ("hunter2-pg", "sesame-redis", "audit-key-that-is-secret-0042")


@pytest.mark.parametrize("as_json", [False, True], ids=["table", "json"])
def test_settings_output_shows_no_secret(tmp_path, as_json):
    args = ["--home", str(tmp_path), "settings", *(["--json"] if as_json else [])]
    result = CliRunner().invoke(app, args, env=SECRETS | {"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "ops:***@db:5432" in result.output and "cache:6380" in result.output
    for secret in PASSWORDS:
        assert secret not in result.output


def test_settings_hide_their_secrets_and_hand_them_to_child_processes(tmp_path, monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    settings = Settings(home=tmp_path)
    shown = f"{settings!r} {settings} {settings.model_dump()} {settings.model_dump_json()}"
    for secret in PASSWORDS:
        assert secret not in shown
    assert sorted(settings.secrets()) == sorted(PASSWORDS)
    child = settings.environment()
    assert {name: child[name] for name in SECRETS} == SECRETS


def test_feature_store_yaml_names_the_passwords_never_holds_them(tmp_path):
    """What `open_store` writes: ${VAR} references Feast 0.67 fills in from the environment."""
    import yaml
    from feast.repo_config import load_repo_config

    from features.store import write_config

    settings = Settings(home=tmp_path, **{k.removeprefix("CLOSEDLOOP_").lower(): v
                                          for k, v in SECRETS.items()})  # fmt: skip
    settings.paths.feast.mkdir(parents=True)
    settings.paths.feast_yaml.write_text("registry: {path: postgresql://ops:hunter2-pg@db}\n")
    written = write_config(settings)  # over the file an earlier release wrote (0644)
    text = written.read_text()
    for secret in PASSWORDS:
        assert secret not in text
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    on_disk = yaml.safe_load(text)
    assert on_disk["registry"]["path"] == (
        f"postgresql+psycopg://ops:${{{POSTGRES_PASSWORD}}}@db:5432/closedloop"
    )
    assert on_disk["online_store"]["connection_string"] == (
        f"cache:6380,db=1,password=${{{REDIS_PASSWORD}}}"
    )
    # the stock feast CLI, with the variables set, reads the configuration this process uses
    env = {POSTGRES_PASSWORD: "hunter2-pg", REDIS_PASSWORD: "sesame-redis"}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        loaded = load_repo_config(settings.paths.feast, written)
    assert loaded.registry.path == feast_config(settings)["registry"]["path"]
    assert (
        loaded.online_store.connection_string
        == (feast_config(settings)["online_store"]["connection_string"])
    )


def test_logs_never_show_a_secret(tmp_path, monkeypatch, caplog):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    redact_logs(Settings(home=tmp_path))
    log = logging.getLogger("closedloop.test")
    with caplog.at_level(logging.INFO):
        log.info("connecting to %s", SECRETS["CLOSEDLOOP_POSTGRES_DSN"])
        log.warning("redis %s down", SECRETS["CLOSEDLOOP_REDIS_URL"])
        try:
            raise RuntimeError(f"cannot sign with {SECRETS['CLOSEDLOOP_AUDIT_KEY']}")
        except RuntimeError:
            log.exception("failed")
    text = caplog.text
    assert "connecting to postgresql://ops:***@db:5432/closedloop" in text
    assert "cannot sign with ***" in text
    for secret in PASSWORDS:
        assert secret not in text
