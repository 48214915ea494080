"""Typed settings, loaded once at the entry point and passed down.

Every value comes from the environment (prefix ``CLOSEDLOOP_``) or its default; nothing below
the CLI reads the environment. One setting, ``profile``, selects the backends: ``embedded``
needs no servers, ``cluster`` uses real PostgreSQL and Redis.
"""

from __future__ import annotations

import json
import logging
import re
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import AwareDatetime, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from closedloop.home import Home


class Profile(StrEnum):
    """Which backends a run uses."""

    EMBEDDED = "embedded"
    CLUSTER = "cluster"


class Settings(BaseSettings):
    """Everything a closedloop run needs to know about its environment."""

    model_config = SettingsConfigDict(env_prefix="CLOSEDLOOP_", extra="forbid", frozen=True)

    profile: Profile = Field(Profile.EMBEDDED, description="embedded (no servers) or cluster")
    home: Path = Field(Path("var"), description="folder holding all state of a run")
    postgres_dsn: SecretStr = Field(
        SecretStr("postgresql://postgres@127.0.0.1:5432/closedloop"),
        description="PostgreSQL for the cluster profile",
    )
    redis_url: SecretStr = Field(
        SecretStr("redis://127.0.0.1:6379/0"), description="Redis for the cluster profile"
    )
    serve_host: str = Field("127.0.0.1", description="address the scoring service listens on")
    serve_port: int = Field(3000, ge=1, le=65535, description="port of the scoring service")
    serve_workers: int = Field(1, ge=1, le=16, description="worker processes of the service")
    serve_max_pending: int = Field(
        8,
        ge=1,
        le=256,
        description="requests of each kind (scoring, events) one worker holds at once, running "
        "or waiting for the ledger; one more is answered 503 with Retry-After at once",
    )
    serve_feature_cache: int = Field(
        50_000,
        ge=0,
        le=10_000_000,
        description="entities per feature service whose online features a service worker keeps "
        "in memory on the cluster profile (about 2 KB each): Redis replies, each dropped as soon "
        "as Redis reports its key written (RESP3 client tracking); 0: every read asks Redis",
    )
    clock_start: AwareDatetime | None = Field(
        None,
        description="start the service's clock at this instant, e.g. a simulated world's end "
        "(staleness and the prediction log then run in the world's time); default: wall clock",
    )
    model_poll_seconds: float = Field(
        5.0, gt=0, description="how often serving asks the registry whether a champion moved"
    )
    registry_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="how long serving waits for the registry at start before it serves the "
        "last known good model from disk",
    )

    dask_scheduler: str | None = Field(
        None,
        description="address of a Dask scheduler (tcp://host:8786) closedloop train fits on "
        "with lightgbm.dask, on any profile; default: on the cluster profile a local Dask "
        "cluster the command starts, on the embedded profile LightGBM in one process",
    )
    dask_workers: int = Field(
        2,
        ge=1,
        le=64,
        description="workers of the local Dask cluster closedloop "
        "train starts on the cluster profile when no scheduler is given",
    )
    action_policy: Path | None = Field(
        None, description="action policy YAML; default: the packaged actions/policies/default.yaml"
    )
    action_endpoints: dict[str, str] = Field(
        default_factory=dict,
        description="HTTP endpoint by action type, as JSON, e.g. "
        '{"trouble_ticket": "http://..."}; types not listed go to the local outbox '
        "HOME/actions/outbox",
    )
    action_retries: int = Field(3, ge=0, le=10, description="retries of a failed delivery")
    action_backoff_seconds: float = Field(
        0.5, ge=0, description="wait before the first retry, doubled at each next one"
    )
    action_timeout_seconds: float = Field(5.0, gt=0, description="timeout of one delivery")
    action_circuit_failures: int = Field(
        5,
        ge=1,
        description="consecutive failed calls to an endpoint that open its circuit: its "
        "deliveries are then dead-lettered at once, without a call",
    )
    action_circuit_cool_down_seconds: float = Field(
        30.0, gt=0, description="how long an open circuit waits before one probe call"
    )
    action_lease_seconds: float = Field(
        60.0,
        gt=0,
        description="how long the dispatcher's lease on the ledger lasts unless renewed: "
        "another dispatcher takes over this long after its holder died (keep it at least twice "
        "one delivery's worst case)",
    )
    stream_key: str = Field(
        "closedloop:events",
        min_length=1,
        description="Redis stream POST /events appends to (cluster profile); its dead letters "
        "go to <key>:dead",
    )
    stream_group: str = Field(
        "closedloop", min_length=1, description="consumer group of closedloop consume"
    )
    stream_claim_idle_seconds: float = Field(
        30.0,
        gt=0,
        description="an entry unacknowledged this long at one consumer is taken over by another",
    )
    stream_max_deliveries: int = Field(
        5, ge=1, description="deliveries of a stream entry before it goes to the dead letters"
    )
    audit_key: SecretStr | None = Field(
        None,
        description="secret (at least 16 characters) that MACs the audit trail and seals its "
        "head checkpoint; default: a key generated into HOME/secrets/audit.key (mode 0600) — set "
        "it on the cluster profile, where processes on other homes share the trail",
    )
    audit_witness: Path | None = Field(
        None,
        description="append-only log of the audit trail's sealed head checkpoints, kept where "
        "whoever administers the ledger's database cannot rewind it (another host's mount, an "
        "append-only file); default HOME/audit/witness.log",
    )
    api_key: SecretStr | None = Field(
        None,
        description="the API key the CLI acts with (its role decides what it may do); "
        "without one the CLI acts as the local admin of an embedded home",
    )
    max_body_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, description="largest request body the service reads (413)"
    )
    events_per_second: float = Field(
        1000.0, gt=0, description="events one API key may post per second, sustained (429)"
    )
    events_burst: int = Field(
        2000, ge=1, description="events one API key may post at once before the rate applies"
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="origins a browser may call the service from (CORS); none by default",
    )
    ledger_schema: str = Field(
        "closedloop", pattern=r"^[a-z_][a-z0-9_]*$", description="PostgreSQL schema of the ledger"
    )
    ledger_busy_seconds: float = Field(
        10.0,
        gt=0,
        le=25,
        description="how long a writer waits for another one holding the ledger; then the "
        "service answers 503 with Retry-After and replay tries again (below the service's 30 s "
        "request timeout)",
    )

    @property
    def paths(self) -> Home:
        """Every path under the home folder."""
        return Home.at(self.home)

    @property
    def witness(self) -> Path:
        """The audit trail's witness log: ``audit_witness``, else under the home."""
        return self.audit_witness or self.paths.audit_witness

    @property
    def world_dir(self) -> Path:
        """Where the synthetic world's raw tables are written."""
        return self.paths.world

    def environment(self) -> dict[str, str]:
        """These settings as ``CLOSEDLOOP_*`` variables, for a child process to load again."""
        values = self.model_dump(mode="json", exclude_none=True, exclude={"api_key"})
        values["postgres_dsn"] = self.postgres_dsn.get_secret_value()
        values["redis_url"] = self.redis_url.get_secret_value()
        if self.audit_key is not None:
            values["audit_key"] = self.audit_key.get_secret_value()
        values["home"] = str(self.paths.root)
        return {
            f"CLOSEDLOOP_{name.upper()}": json.dumps(value)
            if isinstance(value, dict | list)
            else str(value)
            for name, value in values.items()
        }

    def secrets(self) -> list[str]:
        """Every secret value these settings hold (passwords, the audit key), longest first:
        what no output or log may show."""
        found = {
            urlsplit(self.postgres_dsn.get_secret_value()).password,
            urlsplit(self.redis_url.get_secret_value()).password,
            self.audit_key.get_secret_value() if self.audit_key is not None else None,
        }
        return sorted((s for s in found if s), key=len, reverse=True)


def redacted(dsn: str, mask: str = "***") -> str:
    """A DSN (or URL) with any password replaced by ``mask``, fit for printing."""
    scheme, sep, rest = dsn.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return dsn
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}:{mask}@{host}"


def in_schema(dsn: str, schema: str) -> str:
    """A PostgreSQL DSN whose sessions create and find their tables in ``schema`` (libpq's
    ``options=-csearch_path=...``, which SQLAlchemy and psycopg pass on)."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", schema):
        raise ValueError(f"{schema!r} is not a plain schema name")
    return f"{dsn}{'&' if '?' in dsn else '?'}options=-csearch_path%3D{schema}"


_HIDDEN: set[str] = set()


def _hide(text: str) -> str:
    for secret in sorted(_HIDDEN, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def redact_logs(settings: Settings) -> None:
    """From now on every log record of this process, message and traceback, shows each of the
    settings' secrets as ``***`` (called by the entry points once settings are loaded)."""
    make = logging.getLogRecordFactory()
    if not getattr(make, "hides_secrets", False):

        def factory(*args, **kwargs) -> logging.LogRecord:
            record = make(*args, **kwargs)
            message = record.getMessage()
            hidden = _hide(message)
            if hidden != message:
                record.msg, record.args = hidden, None
            if record.exc_info:
                record.exc_text = _hide(logging.Formatter().formatException(record.exc_info))
            return record

        factory.hides_secrets = True  # type: ignore[attr-defined]
        logging.setLogRecordFactory(factory)
    _HIDDEN.update(settings.secrets())
