"""The feature stage's backends, chosen by the profile: each factory builds one and describes it.

- the Feast registry and offline store (:func:`feast_config`, :func:`feature_store_backend`):
  Parquet read by DuckDB on both profiles, the registry in a file (embedded) or PostgreSQL
  (cluster);
- the online store (:func:`online_store`): the SQLite file Feast writes (embedded), read
  without Feast; Feast's Redis store (cluster), read straight from the hashes Feast writes;
- live cell telemetry pushed into the online store: written straight into SQLite (embedded),
  through Feast's ``push`` into Redis (cluster).

Nothing here imports Feast, so describing the backends stays quick.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from closedloop.backends import Backend, Concern, redis_address
from closedloop.home import Home
from closedloop.settings import Profile, Settings, redacted
from features.online import (
    PROJECT,
    FeatureReader,
    LiveWriter,
    OnlineReader,
    ReadingWriter,
    load_layouts,
)

POSTGRES_PASSWORD = "CLOSEDLOOP_POSTGRES_PASSWORD"
REDIS_PASSWORD = "CLOSEDLOOP_REDIS_PASSWORD"
"""The variables ``feature_store.yaml`` names for the passwords, filled in by Feast from the
environment when it reads the file (the stock ``feast`` CLI); the file never holds them."""


def redis_connection(url: str, password: str | None = None) -> str:
    """Feast's Redis ``connection_string`` (``host:port,db=N[,password=...]``) for a URL; its
    password replaced by ``password`` (a ``${VAR}`` reference) when given."""
    parts = urlsplit(url)
    host = f"{parts.hostname or '127.0.0.1'}:{parts.port or 6379}"
    options = [host, f"db={parts.path.strip('/') or 0}"]
    if parts.password:
        options.append(f"password={password or parts.password}")
    return ",".join(options)


def feast_config(settings: Settings, reveal: bool = True) -> dict[str, Any]:
    """The Feast configuration for a home and profile: with the passwords (``reveal``, what
    the store is opened with in this process), or with ``${VAR}`` references to them (what
    ``feature_store.yaml`` holds)."""
    paths = settings.paths
    config: dict[str, Any] = {
        "project": PROJECT,
        "provider": "local",
        "entity_key_serialization_version": 3,
        "offline_store": {"type": "duckdb"},
    }
    if settings.profile is Profile.CLUSTER:
        dsn = settings.postgres_dsn.get_secret_value()
        redis = settings.redis_url.get_secret_value()
        if not reveal:
            dsn = redacted(dsn, f"${{{POSTGRES_PASSWORD}}}")
        config["registry"] = {
            "registry_type": "sql",
            "path": dsn.replace("postgresql://", "postgresql+psycopg://", 1),
            "cache_ttl_seconds": 60,
        }
        config["online_store"] = {
            "type": "redis",
            "connection_string": redis_connection(
                redis, None if reveal else f"${{{REDIS_PASSWORD}}}"
            ),
        }
    else:
        config["registry"] = {"path": str(paths.feast_registry), "cache_ttl_seconds": 60}
        config["online_store"] = {"type": "sqlite", "path": str(paths.online_db)}
    return config


def feature_store_backend(settings: Settings) -> Backend:
    """What :func:`feast_config` configures for the registry and the offline store."""
    config = feast_config(settings)
    paths = settings.paths
    engine = config["offline_store"]["type"]
    if config["registry"].get("registry_type") == "sql":
        registry = f"registry on postgresql {redacted(settings.postgres_dsn.get_secret_value())}"
    else:
        registry = f"registry {config['registry']['path']}"
    where = f"{paths.offline}, {paths.features}; {registry}"
    return Backend(Concern.OFFLINE_STORE, f"parquet read by {engine}", where)


class OnlineStoreError(RuntimeError):
    """The online store's server, or the Feast registry it needs, cannot be reached or read."""


@dataclass(frozen=True)
class SqliteOnlineStore:
    """The embedded profile's online store: the SQLite file Feast writes, read without Feast."""

    paths: Home

    @property
    def backend(self) -> Backend:
        return Backend(Concern.ONLINE_STORE, "sqlite", str(self.paths.online_db))

    @property
    def live_backend(self) -> Backend:
        return Backend(Concern.LIVE_FEATURES, "sqlite", str(self.paths.online_db))

    def readers(self, kept: int = 0) -> dict[str, FeatureReader]:
        """A reader per feature service; FileNotFoundError before apply and materialize.
        (``kept``: nothing to keep, SQLite's reads are in this process already.)"""
        layouts = load_layouts(self.paths.online_layout)
        return {
            name: OnlineReader(self.paths.online_db, layout) for name, layout in layouts.items()
        }

    def live_writer(self) -> ReadingWriter | None:
        """The writer of pushed cell telemetry; None before ``features apply``."""
        database = self.paths.online_db
        return LiveWriter(database) if database.exists() else None


@dataclass(frozen=True)
class RedisOnlineStore:
    """The cluster profile's online store: Feast's Redis store, written through Feast and read
    straight from its hashes."""

    settings: Settings

    @property
    def address(self) -> str:
        return redis_address(self.settings.redis_url.get_secret_value())

    @property
    def backend(self) -> Backend:
        kept = self.settings.serve_feature_cache
        where = (
            f"{self.address}; a service worker keeps the replies of up to {kept:,} entities per "
            "feature service until Redis reports them written"
            if kept
            else f"{self.address}; every read asks Redis"
        )
        return Backend(Concern.ONLINE_STORE, "redis", where)

    @property
    def live_backend(self) -> Backend:
        return Backend(Concern.LIVE_FEATURES, "redis", f"{self.address}, pushed through Feast")

    def readers(self, kept: int = 0) -> dict[str, FeatureReader]:
        """A reader per feature service, straight from the hashes Feast writes (answers equal
        to Feast's ``get_online_features``, tested); the Feast registry is read once first.
        With ``kept``, each reader keeps the replies of up to that many entities until Redis
        reports their key written (:class:`features.store.TrackedReplies`)."""
        import redis

        from features.store import RedisReader, TrackedReplies, open_store

        layouts = load_layouts(self.settings.paths.online_layout)
        try:
            url = self.settings.redis_url.get_secret_value()
            with redis.Redis.from_url(url, socket_timeout=5) as client:
                client.ping()
        except redis.RedisError as error:
            raise OnlineStoreError(f"redis {self.address} is unreachable: {error}") from None
        try:
            open_store(self.settings).list_feature_services()  # the layouts were applied
        except Exception as error:  # the registry's server, driver or schema: reported as one
            raise OnlineStoreError(f"the Feast registry cannot be read: {error}") from error
        client = redis.Redis.from_url(url, socket_timeout=5)
        return {
            name: RedisReader(client, layout, tracked=TrackedReplies(url, kept) if kept else None)
            for name, layout in layouts.items()
        }

    def live_writer(self) -> ReadingWriter | None:
        """The writer of pushed cell telemetry, through Feast's ``push``; None before
        ``features apply``."""
        if not self.settings.paths.online_layout.exists():
            return None
        from features.store import FeastLiveWriter, open_store

        try:
            return FeastLiveWriter(open_store(self.settings))
        except Exception as error:  # the registry's server, driver or schema: reported as one
            raise OnlineStoreError(f"the Feast registry cannot be read: {error}") from error


OnlineStore = SqliteOnlineStore | RedisOnlineStore


def online_store(settings: Settings) -> OnlineStore:
    """The profile's online store: what serving reads and the action layer pushes into."""
    if settings.profile is Profile.CLUSTER:
        return RedisOnlineStore(settings)
    return SqliteOnlineStore(settings.paths)


def describe(settings: Settings) -> list[Backend]:
    """Every backend the feature stage builds for this profile."""
    store = online_store(settings)
    return [store.backend, feature_store_backend(settings), store.live_backend]
