"""Write a generated world to its folder: Parquet tables, JSON-lines events and a manifest.

The folder is written beside its final place and swapped in whole, so a reader never sees a
half-written world.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from closedloop.world import schemas
from closedloop.world.config import WorldConfig
from closedloop.world.simulate import World, WorldSummary
from closedloop.world.tables import MS_PER_DAY


def _write_parquet(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd")


def write_world(world: World, folder: Path) -> None:
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    for spec in schemas.TABLES:
        if spec.name in world.tables:
            _write_parquet(world.tables[spec.name], staging / spec.path)
    for raw in world.telemetry:
        spec = schemas.TELEMETRY_BY_VENDOR[raw.vendor]
        day = raw.received_ms // MS_PER_DAY
        bounds = np.flatnonzero(np.diff(day)) + 1
        for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(day)], strict=True):
            name = np.datetime64(int(day[lo]), "D").astype(str)
            _write_parquet(raw.table.slice(lo, hi - lo), staging / spec.path / f"{name}.parquet")
    events_path = staging / schemas.EVENTS_PATH
    events_path.parent.mkdir(parents=True, exist_ok=True)
    world.events.to_json(
        events_path, orient="records", lines=True, date_format="iso", date_unit="ms"
    )
    manifest = {
        "config": world.config.model_dump(mode="json"),
        "summary": world.summary.model_dump(mode="json"),
        "tables": {
            spec.name: {"path": spec.path, "description": spec.description}
            for spec in schemas.TABLES
        },
        "events": schemas.EVENTS_PATH,
    }
    (staging / schemas.MANIFEST_PATH).write_text(json.dumps(manifest, indent=2) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)


def read_summary(folder: Path) -> WorldSummary:
    """The summary of a world already on disk."""
    manifest = json.loads((folder / schemas.MANIFEST_PATH).read_text())
    return WorldSummary.model_validate(manifest["summary"])


def read_config(folder: Path) -> WorldConfig:
    """The config a world on disk was generated from (re-simulating it gives the same world)."""
    path = folder / schemas.MANIFEST_PATH
    if not path.is_file():
        raise FileNotFoundError(f"no world at {folder} (run: closedloop world generate)")
    return WorldConfig.model_validate(json.loads(path.read_text())["config"])
