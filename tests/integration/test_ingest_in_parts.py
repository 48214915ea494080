"""Ingest and the feature build a part at a time give what they give on whole tables."""

import json
from datetime import UTC, datetime

import pandas as pd
import pyarrow.parquet as pq
import pytest

import features.ingest
import features.pipeline
from closedloop.world.config import WorldConfig
from closedloop.world.simulate import simulate
from closedloop.world.store import write_world
from features.ingest import ingest_world
from features.offline import OfflineStore
from features.pipeline import build_features

CONFIG = WorldConfig(customers=300, days=8, seed=5, customers_per_cell=30)
END = datetime(2026, 1, 9, tzinfo=UTC)


@pytest.fixture(scope="module")
def homes(tmp_path_factory):
    """The same world ingested and built at once (``whole``) and in many small parts."""
    world = tmp_path_factory.mktemp("world") / "world"
    write_world(simulate(CONFIG), world)
    homes = {}
    for name, part_rows, steps in (("whole", 10**9, 10**9), ("parts", 700, 90)):
        home = tmp_path_factory.mktemp(name)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(features.ingest, "PART_ROWS", part_rows)
            patch.setattr(features.pipeline, "STEPS_AT_ONCE", steps)
            ingest_world(world, home, END)
            build_features(home, END)
        homes[name] = home
    return homes


def _tables(home, folder):
    return {
        p.relative_to(home): pq.read_table(p) for p in sorted((home / folder).rglob("*.parquet"))
    }


def test_clean_rows_and_reports_are_the_same_in_parts(homes):
    whole, parts = (_tables(homes[h], "offline") for h in ("whole", "parts"))
    assert whole.keys() == parts.keys()
    for path, table in whole.items():
        assert table.equals(parts[path]), path
    assert OfflineStore(homes["whole"]).reports() == OfflineStore(homes["parts"]).reports()
    (report,) = OfflineStore(homes["parts"]).reports()
    assert report.tables["experience"].read > 3 * 700  # the parts were many
    assert report.tables["cell_telemetry (aurora)"].quarantined > 0


def test_quarantine_is_the_same_in_parts(homes):
    whole, parts = (
        OfflineStore(homes[h])
        .read_quarantine("cell_telemetry")
        .sort_values(["source", "source_row"])
        for h in ("whole", "parts")
    )
    assert len(whole) > 0
    assert whole.reasons.tolist() == parts.reasons.tolist()
    assert [json.loads(r) for r in whole.record] == [json.loads(r) for r in parts.record]


def test_feature_tables_are_the_same_built_by_groups(homes):
    whole, parts = (_tables(homes[h], "features") for h in ("whole", "parts"))
    assert whole.keys() == parts.keys() and len(whole) == 2
    for path, table in whole.items():
        pd.testing.assert_frame_equal(table.to_pandas(), parts[path].to_pandas())
