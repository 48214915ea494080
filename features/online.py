"""Online reads through a feature service, straight from the SQLite online store Feast writes,
and live writes of pushed views (what ``FeatureStore.push(..., to=PushMode.ONLINE)`` writes).

Serving must answer in a fraction of a millisecond and start fast, so this module does not
import Feast. ``features apply`` writes each service's layout (views, tables, TTLs, features)
to ``online_layout.json``; the reader then encodes entity keys and decodes values exactly as
Feast does (entity key serialisation version 3, ``Value`` protobufs of doubles and strings),
which the tests check against Feast's own functions.
"""

from __future__ import annotations

import json
import math
import sqlite3
import struct
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from closedloop.home import Home

PROJECT = "closedloop"  # the Feast project: its SQLite tables are named <project>_<view>
LIVE_VIEW = "cell_live"  # fed by the cell_live_push source
LIVE_FEATURES = (
    "availability_pct",
    "latency_ms",
    "packet_loss_pct",
    "prb_util_pct",
    "connected_users",
    "alarm_count",
)
STRING_TYPE = 2  # feast ValueType.STRING
DOUBLE_TAG = 0x29  # Value.double_val: field 5, 64-bit wire type
STRING_TAG = 0x12  # Value.string_val: field 2, length-delimited wire type

FeatureValue = float | str | None


@dataclass(frozen=True)
class ViewLayout:
    name: str
    table: str  # the SQLite table Feast keeps the view in
    ttl_seconds: float  # 0: never stale
    features: tuple[str, ...]  # as projected by the service
    descriptions: tuple[str, ...]  # each feature in plain words


@dataclass(frozen=True)
class ServiceLayout:
    service: str
    join_key: str
    views: tuple[ViewLayout, ...]

    @property
    def features(self) -> list[str]:
        """The service's features in their fixed order: the model's column order."""
        return [f for view in self.views for f in view.features]

    @property
    def descriptions(self) -> dict[str, str]:
        return {
            f: d
            for view in self.views
            for f, d in zip(view.features, view.descriptions, strict=True)
        }


def save_layouts(path: Path, layouts: list[ServiceLayout]) -> None:
    """Write the services' layouts (``Home.online_layout``)."""
    path.write_text(json.dumps({s.service: asdict(s) for s in layouts}, indent=1))


def load_layouts(path: Path) -> dict[str, ServiceLayout]:
    """The services' layouts written by ``features apply`` (``Home.online_layout``)."""
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `closedloop features apply` first")
    return {
        name: ServiceLayout(
            service=raw["service"],
            join_key=raw["join_key"],
            views=tuple(
                ViewLayout(
                    v["name"],
                    v["table"],
                    v["ttl_seconds"],
                    tuple(v["features"]),
                    tuple(v["descriptions"]),
                )
                for v in raw["views"]
            ),
        )
        for name, raw in json.loads(path.read_text()).items()
    }


def entity_key(join_key: str, entity_id: str) -> bytes:
    """Feast's serialisation (version 3) of a single string join key."""
    key, value = join_key.encode(), entity_id.encode()
    return b"".join(
        (
            struct.pack("<III", 1, STRING_TYPE, len(key)),
            key,
            struct.pack("<II", STRING_TYPE, len(value)),
            value,
        )
    )


def view_table(view: str) -> str:
    """The SQLite table Feast keeps a view in (``compute_table_id``, no versioning)."""
    return f"{PROJECT}_{view}"


def encode_double(value: float) -> bytes:
    """A serialised Feast ``Value(double_val=value)``."""
    return bytes((DOUBLE_TAG,)) + struct.pack("<d", value)


def feast_stamp(moment: datetime) -> int:
    """An event_ts as Feast's SQLite store writes it: ``int(naive_utc.timestamp())``."""
    return int(moment.astimezone(UTC).replace(tzinfo=None).timestamp())


def decode_value(blob: bytes | None) -> FeatureValue:
    """A serialised Feast ``Value`` of a double or a string; the empty Value is missing."""
    if not blob:
        return None
    tag = blob[0]
    if tag == DOUBLE_TAG and len(blob) == 9:
        return struct.unpack("<d", blob[1:])[0]
    if tag == STRING_TAG:
        length, start = _varint(blob, 1)
        return blob[start : start + length].decode()
    raise ValueError(f"unsupported Feast value encoding (tag 0x{tag:02x})")


def decode_seconds(blob: bytes) -> int:
    """The seconds of a serialised protobuf ``Timestamp`` (field 1, a varint; nanos ignored):
    the event time Feast's Redis store keeps per view."""
    at = 0
    while at < len(blob):
        tag, at = _varint(blob, at)
        value, at = _varint(blob, at)  # both fields of a Timestamp are varints
        if tag == 0x08:
            return value
    return 0


def _varint(blob: bytes, at: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = blob[at]
        value |= (byte & 0x7F) << shift
        at += 1
        if byte < 0x80:
            return value, at
        shift += 7


@dataclass(frozen=True)
class OnlineRow:
    """Features of one entity through a service, with each view's freshness."""

    values: dict[str, FeatureValue]
    event_times: dict[str, datetime | None]  # per view; None when the entity has no row
    stale_views: list[str]  # views whose newest row is older than their TTL, or missing

    @property
    def known(self) -> bool:
        """Whether the store holds any row for the entity."""
        return any(t is not None for t in self.event_times.values())


class FeatureReader(Protocol):
    """Reads one service's features for an entity from an online store."""

    layout: ServiceLayout

    def read(self, entity_id: str, now: datetime) -> OnlineRow: ...

    def read_many(self, entity_ids: list[str], now: datetime) -> dict[str, OnlineRow]:
        """Each entity's row, by id (duplicates read once)."""
        ...

    def close(self) -> None: ...


def freshness(
    layout: ServiceLayout, newest: dict[str, datetime | None], now: datetime
) -> list[str]:
    """The views whose newest row is missing or older than their TTL at ``now``."""
    return [
        view.name
        for view in layout.views
        if (when := newest[view.name]) is None
        or (view.ttl_seconds and (now - when).total_seconds() > view.ttl_seconds)
    ]


CHUNK = 500  # entities per query (SQLite bounds a statement's parameters)


class OnlineReader:
    """Reads one service's features for an entity from the SQLite online store."""

    def __init__(self, database: Path, layout: ServiceLayout) -> None:
        if not database.exists():
            raise FileNotFoundError(
                f"{database} is missing: run `closedloop features materialize` first"
            )
        self.layout = layout
        self._connection = sqlite3.connect(
            f"file:{database}?mode=ro", uri=True, check_same_thread=False
        )

    @property
    def features(self) -> list[str]:
        return self.layout.features

    def read(self, entity_id: str, now: datetime) -> OnlineRow:
        return self.read_many([entity_id], now)[entity_id]

    def read_many(self, entity_ids: list[str], now: datetime) -> dict[str, OnlineRow]:
        """Each entity's row, by id: one query per view for up to :data:`CHUNK` entities."""
        keys = {entity_key(self.layout.join_key, e): e for e in entity_ids}
        found: dict[tuple[str, bytes], dict[str, tuple[bytes, str | None]]] = {}
        listed = list(keys)
        for view in self.layout.views:
            for start in range(0, len(listed), CHUNK):
                chunk = listed[start : start + CHUNK]
                query = (
                    f'SELECT entity_key, feature_name, value, event_ts FROM "{view.table}" '
                    f"WHERE entity_key IN ({', '.join('?' * len(chunk))})"
                )
                for key, feature, value, stamp in self._connection.execute(query, chunk):
                    found.setdefault((view.name, key), {})[feature] = (value, stamp)
        rows = {}
        for key, entity_id in keys.items():
            values: dict[str, FeatureValue] = {}
            times: dict[str, datetime | None] = {}
            for view in self.layout.views:
                stored = found.get((view.name, key), {})
                newest = None
                for feature in view.features:
                    blob, stamp = stored.get(feature, (b"", None))
                    values[feature] = decode_value(blob)
                    newest = stamp if stamp and (newest is None or stamp > newest) else newest
                times[view.name] = feast_time(newest)
            rows[entity_id] = OnlineRow(values, times, freshness(self.layout, times, now))
        return rows

    def close(self) -> None:
        self._connection.close()


def open_reader(home: Path, service: str) -> OnlineReader:
    """A reader of one service's features from a home's SQLite online store."""
    paths = Home.at(home)
    layouts = load_layouts(paths.online_layout)
    if service not in layouts:
        raise KeyError(f"unknown feature service {service!r}; choose from {', '.join(layouts)}")
    return OnlineReader(paths.online_db, layouts[service])


@dataclass(frozen=True)
class Reading:
    """Latest values of one entity's features, as of ``at``."""

    entity_id: str
    values: dict[str, float]
    at: datetime


class ReadingWriter(Protocol):
    """Writes cells' live readings into an online store."""

    def write(self, readings: list[Reading]) -> None: ...

    def close(self) -> None: ...


class LiveWriter:
    """Writes the latest values of a pushed view straight into the SQLite online store, as
    Feast's ``push(..., to=PushMode.ONLINE)`` does, without importing Feast; an older reading
    never overwrites a newer one."""

    def __init__(self, database: Path, view: str = LIVE_VIEW, join_key: str = "cell_id") -> None:
        if not database.exists():
            raise FileNotFoundError(f"{database} is missing: run `closedloop features apply`")
        self.join_key = join_key
        self._connection = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
        self._connection.execute("PRAGMA busy_timeout=30000")
        self._connection.execute("PRAGMA journal_mode=WAL")  # readers never wait for a push
        self._connection.execute("PRAGMA synchronous=NORMAL")  # in WAL: no fsync per commit
        self._connection.execute("PRAGMA wal_autocheckpoint=10000")  # fewer, larger checkpoints
        table = view_table(view)
        self._sql = (
            f'INSERT INTO "{table}" (entity_key, feature_name, value, value_text, event_ts, '
            "created_ts) VALUES (?, ?, ?, ?, ?, NULL) ON CONFLICT(entity_key, feature_name) DO "
            "UPDATE SET value = excluded.value, value_text = excluded.value_text, "
            f'event_ts = excluded.event_ts, created_ts = NULL WHERE excluded.event_ts >= "{table}"'
            ".event_ts"
        )

    def write(self, readings: list[Reading]) -> None:
        """Every reading in one transaction; a value that is not a finite number raises
        ValueError and nothing is written."""
        for reading in readings:
            for name, value in reading.values.items():
                if not math.isfinite(value):
                    raise ValueError(f"{reading.entity_id} {name}: {value} is not a finite number")
        rows = [
            (
                entity_key(self.join_key, reading.entity_id),
                name, encode_double(value), str(float(value)), feast_stamp(reading.at),
            )
            for reading in readings
            for name, value in reading.values.items()
        ]  # fmt: skip
        if not rows:
            return
        cursor = self._connection.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        try:
            cursor.executemany(self._sql, rows)
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
        cursor.execute("COMMIT")

    def close(self) -> None:
        self._connection.close()


def feast_time(epoch: int | None) -> datetime | None:
    """An event_ts as Feast reads it back (local wall clock taken as UTC)."""
    return None if epoch is None else datetime.fromtimestamp(epoch).replace(tzinfo=UTC)
