"""The Feast feature store of a closedloop home: configuration, apply, materialise, online reads.

The store is configured from typed settings and also written out as ``feature_store.yaml``, so
the stock ``feast`` CLI works on the same repository. Materialisation has two paths: Feast's own
(``FeatureStore.materialize``) and a bulk path that writes the same rows in the same format to
the SQLite online store, reading each source once with DuckDB and encoding values with numpy.
Serving reads the SQLite store through :mod:`features.online`, from the layout written here,
and Feast's Redis store (the cluster profile) straight from its hashes (:class:`RedisReader`).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import yaml
from feast import FeatureService, FeatureStore, FeatureView, RepoConfig
from feast.data_source import PushMode
from feast.infra.online_stores.helpers import compute_table_id
from feast.protos.feast.types.Value_pb2 import Value

from closedloop.settings import Settings
from features.backends import feast_config
from features.online import (
    LIVE_VIEW,
    PROJECT,
    FeatureValue,
    OnlineRow,
    Reading,
    ServiceLayout,
    ViewLayout,
    decode_seconds,
    decode_value,
    entity_key,
    freshness,
)

DOUBLE_TAG = b"\x29"  # Value.double_val: field 5, 64-bit wire type


def write_config(settings: Settings) -> Path:
    """Write ``feature_store.yaml`` for this profile into the home's Feast repository, for the
    stock ``feast`` CLI: mode 0600, each password a ``${VAR}`` reference (never the value)."""
    paths = settings.paths
    paths.feast.mkdir(parents=True, exist_ok=True)
    content = yaml.safe_dump(feast_config(settings, reveal=False))
    if not paths.feast_yaml.is_file() or paths.feast_yaml.read_text() != content:
        partial = paths.feast_yaml.with_suffix(f".{os.getpid()}.partial")
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(content)
        partial.replace(paths.feast_yaml)  # a reader in another process never sees half a file
    paths.feast_yaml.chmod(0o600)  # a file an earlier release wrote 0644
    return paths.feast_yaml


def open_store(settings: Settings) -> FeatureStore:
    """Write ``feature_store.yaml`` (:func:`write_config`) and open the store with the same
    configuration, the passwords filled in from the settings."""
    write_config(settings)
    config = RepoConfig(**feast_config(settings))
    config.repo_path = settings.paths.feast
    return FeatureStore(repo_path=str(settings.paths.feast), config=config)


def sqlite_path(store: FeatureStore) -> Path | None:
    """The SQLite online store's file, or None when the online store is not SQLite."""
    online = store.config.online_store
    return Path(online.path) if getattr(online, "type", "") == "sqlite" else None


@dataclass(frozen=True)
class Materialised:
    view: str
    entities: int
    values: int


def _latest_rows(
    source: str, keys: list[str], timestamp: str, columns: list[str], start, end
) -> pa.Table:
    """Per entity, the newest row of a Parquet source stamped within [start, end]."""
    selected = ", ".join(f'"{c}"' for c in [*keys, timestamp, *columns])
    partition = ", ".join(f'"{k}"' for k in keys)
    query = f"""
        SELECT {selected} FROM (
            SELECT *, row_number() OVER (
                PARTITION BY {partition} ORDER BY "{timestamp}" DESC
            ) AS newest
            FROM read_parquet('{source}')
            WHERE CAST("{timestamp}" AS TIMESTAMPTZ) BETWEEN $start AND $end
        ) WHERE newest = 1
    """
    with duckdb.connect() as con:
        return con.sql(query, params={"start": start, "end": end}).to_arrow_table()


def _encode_doubles(values: np.ndarray) -> list[bytes]:
    """Serialized ``Value(double_val=x)`` for each x; the empty Value for NaN, as Feast does."""
    n = len(values)
    encoded = np.empty((n, 9), dtype=np.uint8)
    encoded[:, 0] = DOUBLE_TAG[0]
    encoded[:, 1:] = np.ascontiguousarray(values, dtype="<f8").view(np.uint8).reshape(n, 8)
    blob = encoded.tobytes()
    missing = np.isnan(values)
    return [b"" if missing[i] else blob[9 * i : 9 * i + 9] for i in range(n)]


def _encode_strings(values: list[str | None]) -> list[bytes]:
    return [b"" if v is None else Value(string_val=v).SerializeToString() for v in values]


def _entity_keys(keys: list[str], rows: pa.Table) -> list[bytes]:
    if len(keys) != 1:
        raise ValueError(f"the bulk path handles single-key entities, not {keys}")
    return [entity_key(keys[0], value) for value in rows[keys[0]].to_pylist()]


def _sqlite_stamps(column: pa.Array) -> list[int]:
    """Timestamps as Feast's SQLite store keeps them: ``int(naive_utc.timestamp())``."""
    naive = column.cast(pa.timestamp("us", tz="UTC")).cast(pa.timestamp("us")).to_pylist()
    epochs = {t: int(t.timestamp()) for t in set(naive)}
    return [epochs[t] for t in naive]


def bulk_materialize(store: FeatureStore, start: datetime, end: datetime) -> list[Materialised]:
    """Write the newest row per entity in [start, end] of every applied view to SQLite.

    Rows go in primary-key order (entity key, then feature name), so SQLite appends to its
    B-trees instead of seeking, inside one transaction per run.
    """
    path = sqlite_path(store)
    if path is None:
        raise ValueError("the bulk path writes the SQLite online store; use Feast's for others")
    done = []
    by_source: dict[str, list[FeatureView]] = {}
    for view in store.list_feature_views():
        by_source.setdefault(view.batch_source.path, []).append(view)
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=OFF")
        connection.execute("PRAGMA cache_size=-262144")  # 256 MiB of pages
        for source, views in by_source.items():
            first = views[0]
            keys = [c.name for c in first.entity_columns]
            timestamp = first.batch_source.timestamp_field
            columns = sorted({f.name for v in views for f in v.features})
            rows = _latest_rows(source, keys, timestamp, columns, start, end)
            entity_keys = _entity_keys(keys, rows)
            order = sorted(range(len(entity_keys)), key=entity_keys.__getitem__)
            rows = rows.take(pa.array(order, type=pa.int64()))
            entity_keys = [entity_keys[i] for i in order]
            stamps = _sqlite_stamps(rows[timestamp])
            for view in views:
                done.append(_write_view(connection, view, rows, entity_keys, stamps))
    return done


def _encoded(column: pa.Array) -> tuple[list[bytes], list[str | None]]:
    """Each value as Feast stores it: the serialized Value and its text."""
    if pa.types.is_floating(column.type):
        numbers = column.to_numpy(zero_copy_only=False)
        texts = np.where(np.isnan(numbers), None, numbers.astype(str)).tolist()
        return _encode_doubles(numbers), texts
    strings = column.to_pylist()
    return _encode_strings(strings), strings


def _write_view(
    connection: sqlite3.Connection,
    view: FeatureView,
    rows: pa.Table,
    entity_keys: list[bytes],
    stamps: list[int],
) -> Materialised:
    table = compute_table_id(PROJECT, view)
    sql = (
        f'INSERT INTO "{table}" (entity_key, feature_name, value, value_text, event_ts, '
        "created_ts) VALUES (?, ?, ?, ?, ?, NULL) ON CONFLICT(entity_key, feature_name) DO "
        "UPDATE SET value = excluded.value, value_text = excluded.value_text, "
        "event_ts = excluded.event_ts, created_ts = NULL"
    )
    names = sorted(f.name for f in view.features)
    encoded = [_encoded(rows[name].combine_chunks()) for name in names]

    def in_key_order():
        for i, key in enumerate(entity_keys):
            for name, (values, texts) in zip(names, encoded, strict=True):
                yield key, name, values[i], texts[i], stamps[i]

    connection.executemany(sql, in_key_order())
    return Materialised(view.name, len(entity_keys), len(entity_keys) * len(names))


def service_layout(store: FeatureStore, service: FeatureService) -> ServiceLayout:
    """Where and how a service's features live in the SQLite online store."""
    views = []
    for projection in service.feature_view_projections:
        view = store.get_feature_view(projection.name)
        views.append(
            ViewLayout(
                name=view.name,
                table=compute_table_id(PROJECT, view),
                ttl_seconds=(view.ttl or timedelta(0)).total_seconds(),
                features=tuple(f.name for f in projection.features),
                descriptions=tuple(f.description for f in projection.features),
            )
        )
    first = store.get_feature_view(service.feature_view_projections[0].name)
    return ServiceLayout(service.name, first.entity_columns[0].name, tuple(views))


class TrackedReplies:
    """HMGET replies of one Redis connection, kept in this process until Redis says their key
    changed: the connection speaks RESP3 with ``CLIENT TRACKING`` on, so when a key read through
    it is written (Feast's materialisation, a live push) the server pushes an invalidation down
    the same connection, and every read first takes in what was pushed. At most ``capacity``
    keys are kept, the least recently read dropped first; after a reconnection nothing is."""

    def __init__(self, url: str, capacity: int, timeout: float = 5.0) -> None:
        import redis
        from redis.connection import parse_url

        options = parse_url(url)
        kind = options.pop("connection_class", redis.Connection)
        self._connection = kind(
            **options, protocol=3, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self._connection.register_connect_callback(self._track)
        self._replies: OrderedDict[bytes, list] = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def _track(self, connection) -> None:
        self._replies.clear()  # what was read on an earlier connection is no longer tracked
        # the handler redis-py's own client-side cache sets (which needs Redis 7.4)
        connection._parser.set_invalidation_push_handler(self._invalidate)
        connection.send_command("CLIENT", "TRACKING", "ON")
        connection.read_response()

    def _invalidate(self, push: list) -> None:
        if push[1] is None:  # the database was flushed
            self._replies.clear()
            return
        for key in push[1]:
            self._replies.pop(key, None)

    def hmget(self, keys: list[bytes], fields: list[bytes]) -> list[list]:
        """Each key's HMGET of ``fields``: kept replies, the others in one round trip."""
        import redis

        with self._lock:
            try:
                return self._hmget(keys, fields)
            except (redis.ConnectionError, redis.TimeoutError):
                self._connection.disconnect()  # once more on a new connection, nothing kept
                return self._hmget(keys, fields)
            except BaseException:
                self._connection.disconnect()  # replies may be left unread: start over
                raise

    def _hmget(self, keys: list[bytes], fields: list[bytes]) -> list[list]:
        connection = self._connection
        while connection.can_read():  # invalidations pushed since the last read
            connection.read_response(push_request=True)
        missing = [key for key in dict.fromkeys(keys) if key not in self._replies]
        if missing:
            connection.send_packed_command(
                connection.pack_commands([("HMGET", key, *fields) for key in missing])
            )
            for key in missing:
                self._replies[key] = connection.read_response()
        found = []
        for key in keys:
            self._replies.move_to_end(key)
            found.append(self._replies[key])
        while len(self._replies) > self._capacity:
            self._replies.popitem(last=False)
        return found

    def close(self) -> None:
        self._connection.disconnect()


class RedisReader:
    """Reads one service's features for entities straight from Feast's Redis online store: one
    HMGET of each entity's hash, with the keys, field names and value encoding Feast writes
    (its own key helpers), so the answers equal ``get_online_features`` (tested) without
    Feast's per-request planning. The serving reader of the cluster profile; with ``tracked``,
    replies are kept in this process until Redis reports their key written."""

    def __init__(
        self,
        client,
        layout: ServiceLayout,
        project: str = PROJECT,
        tracked: TrackedReplies | None = None,
    ) -> None:
        from feast.infra.online_stores.helpers import _mmh3

        self.layout = layout
        self._client = client
        self._project = project
        self._tracked = tracked
        self._fields: list[bytes] = []
        for view in layout.views:
            self._fields += [_mmh3(f"{view.name}:{feature}") for feature in view.features]
            self._fields.append(f"_ts:{view.name}".encode())

    @property
    def features(self) -> list[str]:
        return self.layout.features

    def _key(self, entity_id: str) -> bytes:
        """Feast's Redis key: the serialised entity key, then the project."""
        return entity_key(self.layout.join_key, entity_id) + self._project.encode()

    def _row(self, found: list[bytes | None], now: datetime) -> OnlineRow:
        values: dict[str, FeatureValue] = {}
        times: dict[str, datetime | None] = {}
        replies = iter(found)
        for view in self.layout.views:
            blobs = [next(replies) for _ in view.features]
            stamp = next(replies)
            when = datetime.fromtimestamp(decode_seconds(stamp), UTC) if stamp else None
            for feature, blob in zip(view.features, blobs, strict=True):
                values[feature] = decode_value(blob) if when is not None else None
            times[view.name] = when
        return OnlineRow(values, times, freshness(self.layout, times, now))

    def read(self, entity_id: str, now: datetime) -> OnlineRow:
        if self._tracked is not None:
            return self._row(self._tracked.hmget([self._key(entity_id)], self._fields)[0], now)
        return self._row(self._client.hmget(self._key(entity_id), self._fields), now)

    def read_many(self, entity_ids: list[str], now: datetime) -> dict[str, OnlineRow]:
        unique = list(dict.fromkeys(entity_ids))
        if self._tracked is not None:
            replies = self._tracked.hmget([self._key(e) for e in unique], self._fields)
        else:
            with self._client.pipeline(transaction=False) as pipe:
                for entity_id in unique:
                    pipe.hmget(self._key(entity_id), self._fields)
                replies = pipe.execute()
        return {e: self._row(found, now) for e, found in zip(unique, replies, strict=True)}

    def close(self) -> None:
        self._client.close()
        if self._tracked is not None:
            self._tracked.close()


class FeastLiveWriter:
    """Pushes cells' live readings through Feast (``push`` to the ``cell_live_push`` source,
    online only): the writer of online stores other than SQLite (Redis on the cluster profile).

    Feast writes every feature of the view with one timestamp per cell, so each push carries
    the cell's current values for the features a reading does not name, read back first; and
    Feast drops a row not newer than the cell's stored one, so on these stores a reading older
    than the cell's newest is dropped even for another feature.
    """

    def __init__(self, store: FeatureStore, view: str = LIVE_VIEW) -> None:
        self._store = store
        self._view = store.get_feature_view(view)
        self._source = self._view.stream_source.name
        self._features = [f.name for f in self._view.features]
        self._join_key = self._view.join_keys[0] if self._view.join_keys else "cell_id"

    def write(self, readings: list[Reading]) -> None:
        """The readings of each cell merged (newest time), then pushed in one call."""
        merged: dict[str, tuple[dict[str, float], datetime]] = {}
        for reading in readings:
            values, at = merged.get(reading.entity_id, ({}, reading.at))
            merged[reading.entity_id] = ({**values, **reading.values}, max(at, reading.at))
        if not merged:
            return
        cells = list(merged)
        current = self._store.get_online_features(
            features=[f"{self._view.name}:{f}" for f in self._features],
            entity_rows=[{self._join_key: cell} for cell in cells],
        ).to_dict()
        rows = [
            {
                self._join_key: cell,
                **{f: merged[cell][0].get(f, current[f][i]) for f in self._features},
                self._view.stream_source.batch_source.timestamp_field: merged[cell][1],
            }
            for i, cell in enumerate(cells)
        ]
        self._store.push(self._source, pd.DataFrame(rows), to=PushMode.ONLINE)

    def close(self) -> None:
        """Nothing to close: the store's connections belong to Feast."""
