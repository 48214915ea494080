"""Great Expectations suites, kept as code, and row-level validation against them.

Each canonical table has a suite: types are fixed by normalisation, so the suites check keys
(not null, unique), ranges, allowed values, orderings of time columns and freshness. Every
failing row is reported with a readable reason per expectation it failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import great_expectations as gx
import great_expectations.expectations as gxe
import pandas as pd
from great_expectations.data_context.types.base import (
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)

from features import canonical
from features.canonical import CanonicalTable


@dataclass(frozen=True)
class Check:
    """One expectation and the reason a failing row is quarantined with."""

    expectation: gxe.Expectation
    reason: str


def _between(column: str, low: float | None, high: float | None, unit: str = "") -> Check:
    shown = f"{'' if low is None else low}..{'' if high is None else high}{unit}"
    return Check(
        gxe.ExpectColumnValuesToBeBetween(column=column, min_value=low, max_value=high),
        f"{column} outside {shown}",
    )


def _in_set(column: str, allowed: list[str]) -> Check:
    return Check(
        gxe.ExpectColumnValuesToBeInSet(column=column, value_set=allowed),
        f"{column} not one of {', '.join(allowed)}",
    )


def _not_before(later: str, earlier: str) -> Check:
    return Check(
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A=later, column_B=earlier, or_equal=True, ignore_row_if="either_value_is_missing"
        ),
        f"{later} before {earlier}",
    )


def _not_after(column: str, as_of: datetime) -> Check:
    return Check(
        gxe.ExpectColumnValuesToBeBetween(column=column, max_value=pd.Timestamp(as_of)),
        f"{column} in the future (after {as_of:%Y-%m-%d %H:%M} UTC)",
    )


def _keys(table: CanonicalTable) -> list[Check]:
    return [
        Check(gxe.ExpectColumnValuesToNotBeNull(column=key), f"{key} missing") for key in table.keys
    ]


def suite(table: CanonicalTable, as_of: datetime, known_cells: list[str] | None) -> list[Check]:
    """The expectations every row of ``table`` must meet to enter the offline store."""
    checks = _keys(table)
    if known_cells is not None and "cell_id" in table.columns and table is not canonical.CELLS:
        checks.append(
            Check(
                gxe.ExpectColumnValuesToBeInSet(column="cell_id", value_set=known_cells),
                "cell_id not in the cell inventory",
            )
        )
    if table.timestamp:
        checks.append(_not_after(table.timestamp, as_of))
    checks += {
        "cells": lambda: [
            _between("capacity_mbps", 0, 100_000),
            _between("baseline_latency_ms", 0, 1_000, " ms"),
        ],
        "cell_telemetry": lambda: [
            _between("availability_pct", 0, 100, " %"),
            _between("latency_ms", 0.1, 5_000, " ms"),
            _between("packet_loss_pct", 0, 100, " %"),
            _between("throughput_mbps", 0, 100_000, " Mbit/s"),
            _between("prb_util_pct", 0, 100, " %"),
            _between("connected_users", 0, 100_000),
            _between("alarm_count", 0, 10_000),
            _not_before("received_at", "ts"),
        ],
        "customers": lambda: [
            _in_set("segment", ["consumer", "smb", "enterprise"]),
            _in_set("sla_tier", ["bronze", "silver", "gold", "platinum"]),
            _in_set("contract_type", ["month_to_month", "one_year", "two_year"]),
            _between("mrr", 0, 1_000_000, " USD"),
            _between("total_charges", 0, 100_000_000, " USD"),
            _between("tenure_months", 0, 1_200),
        ],
        "experience": lambda: [
            _between("outage_minutes", 0, 1_440),
            _between("degraded_minutes", 0, 1_440),
            _between("latency_p95_ms", 0, 60_000, " ms"),
            _between("failed_sessions", 0, 100_000),
        ],
        "usage": lambda: [
            _between("data_mb", 0, 10_000_000),
            _between("voice_minutes", 0, 1_000_000),  # an account may have many lines
            _between("sms_count", 0, 100_000),
        ],
        "tickets": lambda: [
            _in_set("category", ["network", "billing", "device", "other"]),
            _not_before("resolved_at", "opened_at"),
        ],
        "invoices": lambda: [_between("amount", 0, 10_000_000), _not_before("due_on", "issued_on")],
        "credits": lambda: [_between("amount", 0, 1_000_000)],
        "churn_labels": lambda: [],
        "cell_fault_labels": lambda: [_not_before("end_at", "start_at")],
    }[table.name]()
    return checks


def uniqueness(table: CanonicalTable) -> gxe.Expectation:
    """The key expectation; duplicates it finds are resolved by the caller's rule."""
    if len(table.keys) == 1:
        return gxe.ExpectColumnValuesToBeUnique(column=table.keys[0])
    return gxe.ExpectCompoundColumnsToBeUnique(column_list=list(table.keys))


class Validator:
    """Runs suites on pandas frames in an in-memory Great Expectations context."""

    def __init__(self) -> None:
        config = DataContextConfig(
            store_backend_defaults=InMemoryStoreBackendDefaults(),
            analytics_enabled=False,
            progress_bars=ProgressBarsConfig(globally=False),
        )
        self._context = gx.get_context(mode="ephemeral", project_config=config)
        self._source = self._context.data_sources.add_pandas("closedloop")
        self._batches: dict[str, object] = {}

    def _batch_definition(self, name: str):
        if name not in self._batches:
            asset = self._source.add_dataframe_asset(name)
            self._batches[name] = asset.add_batch_definition_whole_dataframe("all")
        return self._batches[name]

    def failures(
        self, name: str, frame: pd.DataFrame, expectations: list[gxe.Expectation]
    ) -> list[pd.Index]:
        """For each expectation, the index labels of the rows of ``frame`` that fail it."""
        if frame.empty or not expectations:
            return [pd.Index([]) for _ in expectations]
        suite_name = f"{name}-{len(self._context.suites.all())}"
        gx_suite = self._context.suites.add(gx.ExpectationSuite(name=suite_name))
        added = [gx_suite.add_expectation(expectation) for expectation in expectations]
        batch = self._batch_definition(name).get_batch(batch_parameters={"dataframe": frame})
        result = batch.validate(gx_suite, result_format={"result_format": "COMPLETE"})
        self._context.suites.delete(suite_name)
        by_id: dict[str, pd.Index] = {}
        for outcome in result.results:
            if outcome.exception_info and outcome.exception_info.get("raised_exception"):
                message = outcome.exception_info.get("exception_message")
                raise RuntimeError(f"expectation on {name} could not run: {message}")
            failing = outcome.result.get("unexpected_index_list") or []
            by_id[outcome.expectation_config.id] = pd.Index(failing)
        return [by_id[expectation.id] for expectation in added]

    def reasons(self, name: str, frame: pd.DataFrame, checks: list[Check]) -> pd.Series:
        """'; '-joined reasons for every failing row of ``frame``, indexed like it."""
        failing = self.failures(name, frame, [c.expectation for c in checks])
        parts = [
            pd.Series(check.reason, index=index, dtype=str)
            for check, index in zip(checks, failing, strict=True)
            if len(index)
        ]
        if not parts:
            return pd.Series(dtype=str)
        return pd.concat(parts).groupby(level=0, sort=True).agg("; ".join)
