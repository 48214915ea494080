"""The Feast feature store of a closedloop home: configuration, apply, materialise, online reads.

The store is configured from typed settings and also written out as ``feature_store.yaml``, so
the stock ``feast`` CLI works on the same repository. Materialisation has two paths: Feast's own
(``FeatureStore.materialize``) and a bulk path that writes the same rows in the same format to
the SQLite online store, reading each source once with DuckDB and encoding values with numpy.
Online reads through a feature service likewise have a direct SQLite path for serving.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import yaml
from feast import FeatureService, FeatureStore, FeatureView
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.helpers import compute_table_id
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value

from closedloop.settings import Profile, Settings

PROJECT = "closedloop"
DOUBLE_TAG = b"\x29"  # Value.double_val: field 5, 64-bit wire type


def feast_config(settings: Settings) -> dict[str, Any]:
    """The ``feature_store.yaml`` content for a home and profile."""
    feast_dir = settings.home.resolve() / "feast"
    config: dict[str, Any] = {
        "project": PROJECT,
        "provider": "local",
        "entity_key_serialization_version": 3,
        "offline_store": {"type": "duckdb"},
    }
    if settings.profile is Profile.CLUSTER:
        dsn = settings.postgres_dsn.get_secret_value()
        config["registry"] = {
            "registry_type": "sql",
            "path": dsn.replace("postgresql://", "postgresql+psycopg://", 1),
            "cache_ttl_seconds": 60,
        }
        host = settings.redis_url.removeprefix("redis://").split("/")[0]
        config["online_store"] = {"type": "redis", "connection_string": host}
    else:
        config["registry"] = {"path": str(feast_dir / "registry.db"), "cache_ttl_seconds": 60}
        config["online_store"] = {"type": "sqlite", "path": str(feast_dir / "online.db")}
    return config


def open_store(settings: Settings) -> FeatureStore:
    """Write ``HOME/feast/feature_store.yaml`` for this profile and open the store on it."""
    repo = settings.home.resolve() / "feast"
    repo.mkdir(parents=True, exist_ok=True)
    (repo / "feature_store.yaml").write_text(yaml.safe_dump(feast_config(settings)))
    return FeatureStore(repo_path=str(repo))


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
    columns = [rows[k].to_pylist() for k in keys]
    return [
        serialize_entity_key(
            EntityKey(join_keys=keys, entity_values=[Value(string_val=v) for v in values]),
            entity_key_serialization_version=3,
        )
        for values in zip(*columns, strict=True)
    ]


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


@dataclass(frozen=True)
class OnlineRow:
    """Features of one entity through a service, with each view's freshness."""

    values: dict[str, Any]
    event_times: dict[str, datetime | None]  # per view; None when the entity has no row
    stale_views: list[str]  # views whose newest row is older than their TTL


class OnlineReader:
    """Direct reads of a service's features from the SQLite online store (the serving path)."""

    def __init__(self, store: FeatureStore, service: FeatureService) -> None:
        path = sqlite_path(store)
        if path is None:
            raise ValueError("the direct reader needs the SQLite online store")
        self._connection = sqlite3.connect(path, check_same_thread=False)
        self._views = []
        for projection in service.feature_view_projections:
            view = store.get_feature_view(projection.name)
            wanted = [f.name for f in projection.features]
            self._views.append(
                (
                    view.name,
                    view.ttl or timedelta(0),
                    wanted,
                    f'SELECT feature_name, value, event_ts FROM "{compute_table_id(PROJECT, view)}"'
                    " WHERE entity_key = ?",
                )
            )
        entity = store.get_feature_view(service.feature_view_projections[0].name)
        self.join_key = entity.entity_columns[0].name
        self.features = [f for _, _, wanted, _ in self._views for f in wanted]

    def key(self, entity_id: str) -> bytes:
        return serialize_entity_key(
            EntityKey(join_keys=[self.join_key], entity_values=[Value(string_val=entity_id)]),
            entity_key_serialization_version=3,
        )

    def read(self, entity_id: str, now: datetime) -> OnlineRow:
        key = self.key(entity_id)
        values: dict[str, Any] = {}
        times: dict[str, datetime | None] = {}
        stale = []
        for name, ttl, wanted, query in self._views:
            found = {f: (v, ts) for f, v, ts in self._connection.execute(query, (key,))}
            newest = None
            for feature in wanted:
                blob, stamp = found.get(feature, (b"", None))
                values[feature] = _decode(blob)
                newest = stamp if stamp and (newest is None or stamp > newest) else newest
            event_time = _feast_time(newest)
            times[name] = event_time
            if event_time is None or (ttl and now - event_time > ttl):
                stale.append(name)
        return OnlineRow(values, times, stale)

    def close(self) -> None:
        self._connection.close()


def _feast_time(epoch: int | None) -> datetime | None:
    """An event_ts as Feast reads it back (local wall clock taken as UTC)."""
    return None if epoch is None else datetime.fromtimestamp(epoch).replace(tzinfo=UTC)


def _decode(blob: bytes) -> Any:
    if not blob:
        return None
    value = Value.FromString(blob)
    kind = value.WhichOneof("val")
    return getattr(value, kind) if kind else None
