"""Admission: the one gate every row passes to enter the offline store, whatever its source.

Rows arrive normalised to a canonical table, each with its provenance. Those the normaliser
could not read are rejected with its reason; the rest face the table's Great Expectations
suite; of the rows that pass, duplicates of a key are resolved by keeping the first in arrival
order. Whatever does not enter is quarantined with every reason, so that
``read == ingested + quarantined`` always holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pandas as pd
import pyarrow as pa

from features.canonical import CanonicalTable
from features.offline import TableReport, to_arrow
from features.quarantine import merge_reasons, quarantine_rows, reason_counts
from features.validation import Validator, suite, uniqueness


@dataclass(frozen=True)
class Admitted:
    rows: pa.Table
    quarantine: pd.DataFrame
    report: TableReport


def admit(
    table: CanonicalTable,
    raw: pd.DataFrame,
    normalised: pd.DataFrame,
    rejected: pd.Series,
    validator: Validator,
    as_of: datetime,
    known_cells: list[str] | None = None,
    arrival: str | None = None,
) -> Admitted:
    """Validate ``normalised`` (indexed like ``raw``) and split it into admitted and quarantined.

    ``rejected`` holds reasons for rows of ``raw`` the normaliser could not turn into a
    canonical row; ``arrival`` names the column ordering duplicates (first one wins).
    """
    candidates = normalised.drop(index=rejected.index, errors="ignore")
    failed = validator.reasons(table.name, candidates, suite(table, as_of, known_cells))
    valid = candidates.drop(index=failed.index)
    duplicates = _later_duplicates(table, valid, validator, arrival)
    admitted = valid.drop(index=duplicates.index).sort_values(list(table.keys), kind="stable")
    reasons = merge_reasons(rejected, failed, duplicates)
    quarantine = quarantine_rows(table.name, raw, reasons)
    report = TableReport(
        read=len(raw),
        ingested=len(admitted),
        quarantined=len(quarantine),
        reasons=reason_counts(quarantine) if len(quarantine) else {},
    )
    if report.read != report.ingested + report.quarantined:
        raise AssertionError(f"{table.name}: rows lost between read and store ({report})")
    return Admitted(to_arrow(table, admitted), quarantine, report)


def _later_duplicates(
    table: CanonicalTable, rows: pd.DataFrame, validator: Validator, arrival: str | None
) -> pd.Series:
    """Every duplicate of a key but the first to arrive, with the reason it is kept out."""
    (involved,) = validator.failures(f"{table.name}-keys", rows, [uniqueness(table)])
    if not len(involved):
        return pd.Series(dtype=str)
    clashing = rows.loc[involved]
    if arrival:
        clashing = clashing.sort_values(arrival, kind="stable")
    later = clashing.index[clashing.duplicated(list(table.keys), keep="first")]
    keys = ", ".join(table.keys)
    return pd.Series(f"duplicate of an earlier record for ({keys})", index=later, dtype=str)
