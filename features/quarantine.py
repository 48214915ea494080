"""Quarantine: rows that cannot enter the offline store, kept with every reason and their origin.

Rows travel with two provenance columns, ``_source`` (file) and ``_source_row`` (0-based row or
line in it); normalisers keep the raw frame's index so a rejected canonical row can always be
traced back to the record exactly as it was received.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa

from features.canonical import QUARANTINE

SOURCE = "_source"
SOURCE_ROW = "_source_row"
PROVENANCE = (SOURCE, SOURCE_ROW)


def with_provenance(raw: pd.DataFrame, source: str, first_row: int = 0) -> pd.DataFrame:
    """``raw`` with the provenance columns added and a fresh 0..n-1 index."""
    out = raw.reset_index(drop=True)
    out[SOURCE] = source
    out[SOURCE_ROW] = np.arange(first_row, first_row + len(out), dtype=np.int64)
    return out


def _json_records(frame: pd.DataFrame) -> list[str]:
    if frame.empty:
        return []
    text = frame.to_json(orient="records", lines=True, date_format="iso", date_unit="ms")
    return text.splitlines()


def quarantine_rows(table: str, raw: pd.DataFrame, reasons: pd.Series) -> pd.DataFrame:
    """Quarantine records for the rows of ``raw`` named by ``reasons``' index."""
    if reasons.empty:
        return empty_quarantine()
    rows = raw.loc[reasons.index]
    payload = rows.drop(columns=[c for c in PROVENANCE if c in rows.columns])
    return pd.DataFrame(
        {
            "table": table,
            "source": rows[SOURCE].astype(str).to_numpy(),
            "source_row": rows[SOURCE_ROW].astype(np.int64).to_numpy(),
            "reasons": reasons.astype(str).to_numpy(),
            "record": _json_records(payload),
        }
    )


def merge_reasons(*reasons: pd.Series) -> pd.Series:
    """One '; '-joined reason per row from several partial reason series."""
    present = [r for r in reasons if not r.empty]
    if not present:
        return pd.Series(dtype=str)
    stacked = pd.concat(present)
    return stacked.groupby(level=0, sort=True).agg("; ".join)


def empty_quarantine() -> pd.DataFrame:
    return QUARANTINE.empty_table().to_pandas()


def quarantine_table(frames: list[pd.DataFrame]) -> pa.Table:
    rows = [f for f in frames if not f.empty]
    frame = pd.concat(rows, ignore_index=True) if rows else empty_quarantine()
    frame = frame.sort_values(["table", "source", "source_row"], kind="stable")
    return pa.Table.from_pandas(frame, schema=QUARANTINE, preserve_index=False)


def reason_counts(quarantine: pd.DataFrame) -> dict[str, int]:
    """How many rows failed each individual reason (a row failing two counts in both)."""
    singles = quarantine["reasons"].str.split("; ").explode()
    return {str(k): int(v) for k, v in singles.value_counts().sort_index().items()}


def decode_record(record: str) -> dict:
    return json.loads(record)
