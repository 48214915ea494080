"""The admission gate: every quarantine reason, first-arrival deduplication, no row lost."""

from datetime import UTC, datetime

import pandas as pd
import pytest

from features import canonical
from features.admission import admit
from features.quarantine import decode_record, with_provenance
from features.validation import Validator

AS_OF = datetime(2026, 2, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def validator():
    return Validator()


def _telemetry(**changes):
    base = {
        "cell_id": ["c1", "c1", "c1", "c2", "c1", "ghost"],
        "ts": pd.to_datetime(
            ["2026-01-01 00:00"] * 2
            + ["2026-01-01 00:15"] * 2
            + ["2026-01-01 00:30", "2026-01-01 00:30"],
            utc=True,
        ),
        "interval_minutes": 15.0,
        "availability_pct": [100.0, 100.0, 250.0, 100.0, 100.0, 100.0],
        "latency_ms": [30.0, 30.0, 30.0, 30.0, None, 30.0],
        "received_at": pd.to_datetime(
            [
                "2026-01-01 00:20",
                "2026-01-01 00:16",
                "2026-01-01 00:31",
                "2026-01-01 00:31",
                "2026-01-01 00:10",
                "2026-01-01 00:50",
            ],
            utc=True,
        ),
    }
    return pd.DataFrame({**base, **changes})


def test_each_failure_is_quarantined_with_its_reason(validator):
    normalised = _telemetry()
    raw = with_provenance(normalised.copy(), "raw/file.parquet")
    rejected = pd.Series({3: "first sample of the cell"}, dtype=str)
    admitted = admit(
        canonical.CELL_TELEMETRY, raw, normalised, rejected, validator, AS_OF, ["c1", "c2"],
        arrival="received_at",
    )  # fmt: skip
    report = admitted.report
    assert (report.read, report.ingested, report.quarantined) == (6, 1, 5)
    reasons = dict(zip(admitted.quarantine.source_row, admitted.quarantine.reasons, strict=True))
    assert reasons[0] == "duplicate of an earlier record for (cell_id, ts)"  # row 1 arrived first
    assert reasons[2] == "availability_pct outside 0..100 %"
    assert reasons[3] == "first sample of the cell"
    assert "received_at before ts" in reasons[4]
    assert reasons[5] == "cell_id not in the cell inventory"
    kept = admitted.rows.to_pandas()
    assert kept.received_at.tolist() == [pd.Timestamp("2026-01-01 00:16", tz="UTC")]
    record = decode_record(admitted.quarantine.set_index("source_row").record[2])
    assert record["availability_pct"] == 250.0 and "_source" not in record


def test_missing_keys_values_outside_sets_and_future_rows(validator):
    normalised = pd.DataFrame(
        {
            "ticket_id": ["t1", None, "t3", "t4"],
            "customer_id": ["a", "b", "c", "d"],
            "opened_at": pd.to_datetime(
                ["2026-01-01", "2026-01-02", "2026-03-01", "2026-01-05"], utc=True
            ),
            "resolved_at": pd.to_datetime(["2026-01-02", None, None, "2026-01-04"], utc=True),
            "category": ["network", "billing", "network", "weather"],
        }
    )
    raw = with_provenance(normalised.copy(), "tickets.csv")
    admitted = admit(canonical.TICKETS, raw, normalised, pd.Series(dtype=str), validator, AS_OF)
    reasons = dict(zip(admitted.quarantine.source_row, admitted.quarantine.reasons, strict=True))
    assert reasons[1] == "ticket_id missing"
    assert reasons[2].startswith("opened_at in the future")
    assert "category not one of network, billing, device, other" in reasons[3]
    assert "resolved_at before opened_at" in reasons[3]
    assert admitted.report.reasons["ticket_id missing"] == 1
    assert admitted.rows.num_rows == 1


def test_nothing_to_admit_is_fine(validator):
    empty = canonical.CELLS.schema.empty_table().to_pandas()
    admitted = admit(
        canonical.CELLS, with_provenance(empty, "x"), empty, pd.Series(dtype=str), validator, AS_OF
    )
    assert (admitted.report.read, admitted.report.ingested, admitted.report.quarantined) == (
        0,
        0,
        0,
    )
