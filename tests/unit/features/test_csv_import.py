"""Column mappings rule by rule, on three-row frames and tiny CSVs."""

import re
from datetime import UTC, datetime
from textwrap import dedent

import pandas as pd
import pytest

from features.csv_import import (
    MappingError,
    import_csv,
    import_frame,
    map_file,
    map_table,
    parse_mapping,
)
from features.offline import OfflineStore
from features.quarantine import with_provenance

AS_OF = datetime(2025, 1, 1, tzinfo=UTC)


def _mapping(yaml_text: str):
    """A mapping named 'test' from the rest of its YAML."""
    return parse_mapping("name: test\n" + dedent(yaml_text))


def _one_table(table: str, *rules: str, options: tuple[str, ...] = (), head: str = ""):
    """A mapping with one table: its ``options`` lines, then its column ``rules``, one a line."""
    lines = [head, "tables:", f"  {table}:", *(f"    {o}" for o in options), "    columns:"]
    return _mapping("\n".join(lines + [f"      {rule}" for rule in rules]) + "\n")


def _raw(**columns: list[str]) -> pd.DataFrame:
    return with_provenance(pd.DataFrame(columns, dtype=str), "test.csv")


def _customers(*rules: str, **columns: list[str]):
    """map_table('customers') with customer_id from 'id' plus ``rules``, on ``columns``."""
    mapping = _one_table("customers", "customer_id: {from: id}", *rules)
    rows = len(next(iter(columns.values())))
    return map_table("customers", mapping, _raw(id=[f"c{i}" for i in range(rows)], **columns))


# --- rule by rule ----------------------------------------------------------------------------


def test_rename_and_float_read_the_source_column_and_name_the_unreadable_cell():
    part = _customers("mrr: {from: Monthly, type: float}", Monthly=["29.85", " 56.95 ", "abc"])
    assert part.normalised["mrr"].iloc[:2].tolist() == [29.85, 56.95]
    assert part.rejected.to_dict() == {2: "Monthly: cannot read 'abc' as float"}


def test_int_rejects_fractions_and_stores_floats():
    part = _customers("tenure_months: {from: tenure, type: int}", tenure=["0", "34", "1.5"])
    assert part.normalised["tenure_months"].iloc[:2].tolist() == [0.0, 34.0]
    assert part.rejected.to_dict() == {2: "tenure: cannot read '1.5' as int"}


def test_unit_multiplies_by_a_number_or_a_named_conversion():
    mapping = _one_table(
        "cell_telemetry",
        "cell_id: {from: cell}",
        "ts: {from: at, type: timestamp}",
        "latency_ms: {from: latency_us, unit: us->ms}",
        "prb_util_pct: {from: prb, unit: ratio->pct}",
        "throughput_mbps: {from: kbit, unit: 0.001}",
    )
    raw = _raw(
        cell=["a", "b", "c"],
        at=["2024-01-01T00:00"] * 3,
        latency_us=["1500", "250", "0"],
        prb=["0.5", "0.25", "1"],
        kbit=["2000", "500", "0"],
    )
    frame = map_table("cell_telemetry", mapping, raw).normalised
    assert frame["latency_ms"].tolist() == pytest.approx([1.5, 0.25, 0.0])
    assert frame["prb_util_pct"].tolist() == pytest.approx([50.0, 25.0, 100.0])
    assert frame["throughput_mbps"].tolist() == pytest.approx([2.0, 0.5, 0.0])


def test_id_strips_adds_the_prefix_and_rejects_blanks():
    mapping = _one_table(
        "churn_labels", "customer_id: {from: id, prefix: ibm-}", "churned: {from: churn}"
    )
    part = map_table("churn_labels", mapping, _raw(id=[" 7590 ", "", "x"], churn=["1", "0", "1"]))
    assert part.normalised["customer_id"][[0, 2]].tolist() == ["ibm-7590", "ibm-x"]
    assert part.rejected.to_dict() == {1: "id is blank"}


def test_bool_reads_yes_no_words_and_rejects_others():
    mapping = _one_table("churn_labels", "customer_id: {from: id}", "churned: {from: churn}")
    raw = _raw(id=["a", "b", "c"], churn=["Yes", "no", "maybe"])
    part = map_table("churn_labels", mapping, raw)
    assert part.normalised["churned"].iloc[:2].tolist() == [True, False]
    assert part.rejected.to_dict() == {2: "churn: cannot read 'maybe' as bool"}


def test_values_rewrite_source_text_and_reject_unlisted_values():
    part = _customers(
        "contract_type: {from: Contract, values: {Month-to-month: month_to_month, 1y: one_year}}",
        Contract=["Month-to-month", "1y", "Weekly"],
    )
    assert part.normalised["contract_type"].iloc[:2].tolist() == ["month_to_month", "one_year"]
    assert part.rejected.to_dict() == {2: "Contract: 'Weekly' is not one of Month-to-month, 1y"}


def test_yes_and_no_stay_text_in_the_yaml_so_they_can_be_values_keys():
    mapping = _one_table(
        "churn_labels",
        "customer_id: {from: id}",
        "churned: {from: Churn, values: {Yes: true, No: false}}",
    )
    part = map_table("churn_labels", mapping, _raw(id=["a", "b", "c"], Churn=["Yes", "No", "Yes"]))
    assert part.normalised["churned"].tolist() == [True, False, True]


def test_a_constant_value_fills_every_row():
    part = _customers("segment: {value: consumer}", "tenure_months: {value: 12}", x=[""] * 3)
    assert part.normalised["segment"].tolist() == ["consumer"] * 3
    assert part.normalised["tenure_months"].tolist() == [12.0] * 3


def test_date_reads_a_format():
    part = _customers("signup_date: {from: since, format: '%d/%m/%Y'}", since=["31/01/2024"] * 3)
    assert str(part.normalised["signup_date"].iloc[0]) == "2024-01-31"


def test_timestamps_are_stored_in_utc_from_their_zone_or_offset_and_can_be_shifted():
    mapping = _one_table(
        "cell_fault_labels",
        "cell_id: {from: cell}",
        "start_at: {from: at, timezone: Europe/Madrid}",
        "end_at: {from: at, timezone: Europe/Madrid, add_minutes: 15}",
    )
    raw = _raw(cell=["a", "b", "c"], at=["2024-01-15 10:00", "2024-07-15 10:00+02:00", "soon"])
    part = map_table("cell_fault_labels", mapping, raw)
    starts = part.normalised["start_at"]
    assert starts.iloc[0] == pd.Timestamp("2024-01-15 09:00", tz="UTC")
    assert starts.iloc[1] == pd.Timestamp("2024-07-15 08:00", tz="UTC")
    assert part.normalised["end_at"].iloc[0] == pd.Timestamp("2024-01-15 09:15", tz="UTC")
    assert part.rejected.to_dict() == {2: "at: cannot read 'soon' as timestamp"}


# --- blanks and error values -----------------------------------------------------------------


def test_blank_cells_read_as_null_by_default_and_are_counted():
    part = _customers("total_charges: {from: total}", total=["10.5", " ", "3"])
    assert part.normalised["total_charges"].isna().tolist() == [False, True, False]
    assert part.rejected.empty
    assert part.notes == ["customers.total_charges: 1 blank total read as null"]


def test_blank_reject_turns_a_blank_cell_into_a_reason():
    part = _customers("total_charges: {from: total, blank: reject}", total=["10.5", "", "3"])
    assert part.rejected.to_dict() == {1: "total is blank"}
    assert part.notes == []


def test_error_values_reject_the_row_naming_column_and_value():
    mapping = _one_table(
        "customers",
        "customer_id: {from: id}",
        "mrr: {from: m}",
        head='file: {error_values: ["#¡VALOR!"]}',
    )
    part = map_table("customers", mapping, _raw(id=["a", "b", "c"], m=["1", "#¡VALOR!", "2"]))
    assert part.rejected.to_dict() == {1: "m: spreadsheet error '#¡VALOR!'"}


def test_every_reason_of_a_row_is_kept_once():
    part = _customers(
        "mrr: {from: m}",
        "list_price: {from: m}",
        "total_charges: {from: t, blank: reject}",
        m=["x", "1", "2"],
        t=["", "1", "2"],
    )
    assert part.rejected.to_dict() == {0: "m: cannot read 'x' as float; t is blank"}


# --- clock times, labels, distinct -----------------------------------------------------------

CLOCK = "clock_time: {anchor: 2024-03-04, key: [cell]}"


def test_clock_times_give_the_kth_repeat_of_a_cell_and_time_day_anchor_plus_k():
    mapping = _one_table(
        "cell_telemetry",
        "cell_id: {from: cell}",
        "ts: {from: time, type: clock_time}",
        head=CLOCK,
    )
    raw = _raw(cell=["a", "b", "a", "a", "a"], time=["10:45", "10:45", "9:00", "10:45", "10:45"])
    ts = map_table("cell_telemetry", mapping, raw).normalised["ts"]
    assert ts.astype(str).tolist() == [
        "2024-03-04 10:45:00+00:00",
        "2024-03-04 10:45:00+00:00",
        "2024-03-04 09:00:00+00:00",
        "2024-03-05 10:45:00+00:00",
        "2024-03-06 10:45:00+00:00",
    ]


def test_unreadable_clock_times_are_rejected():
    mapping = _one_table(
        "cell_telemetry",
        "cell_id: {from: cell}",
        "ts: {from: time, type: clock_time}",
        head=CLOCK,
    )
    raw = _raw(cell=["a", "a", "a"], time=["1:00", "25:00", "2:00"])
    part = map_table("cell_telemetry", mapping, raw)
    assert part.rejected.to_dict() == {1: "time: cannot read '25:00' as clock_time"}


def test_a_label_table_gets_a_row_per_positive_sample_and_rejects_other_values():
    mapping = _one_table(
        "cell_fault_labels",
        "cell_id: {from: cell}",
        "start_at: {from: time, type: clock_time}",
        "end_at: {from: time, type: clock_time, add_minutes: 15}",
        "kind: {value: anomaly}",
        options=("label: {from: Unusual, positive: [1], negative: [0]}",),
        head=CLOCK,
    )
    raw = _raw(cell=["a", "b", "c", "d"], time=["1:00"] * 4, Unusual=["1", "0", "2", "1"])
    part = map_table("cell_fault_labels", mapping, raw)
    assert part.raw.index.tolist() == [0, 2, 3]
    assert part.rejected.to_dict() == {
        2: "Unusual: '2' is not a label value (positive 1; negative 0)"
    }
    row = part.normalised.loc[0]
    assert (row["kind"], row["end_at"] - row["start_at"]) == ("anomaly", pd.Timedelta("15min"))
    assert part.notes == ["cell_fault_labels: 1 rows with Unusual = 0 add no row"]


def test_distinct_folds_rows_equal_to_an_earlier_one_but_not_clashing_ones():
    mapping = _one_table(
        "cells", "cell_id: {from: cell}", "vendor: {from: v}", options=("distinct: true",)
    )
    part = map_table("cells", mapping, _raw(cell=["a", "a", "b", "a"], v=["x", "x", "y", "z"]))
    assert part.raw.index.tolist() == [0, 2, 3]
    assert part.notes == [
        "cells: 1 rows equal to an earlier row in every mapped column folded into it "
        "(distinct), leaving 3"
    ]


# --- the mapping does not fit ----------------------------------------------------------------


def test_a_missing_source_column_is_named_with_the_columns_the_file_has():
    mapping = _one_table("customers", "customer_id: {from: id}", "mrr: {from: MRR}")
    message = "customers.mrr: source column 'MRR' is not in the file; it has id, Monthly"
    with pytest.raises(MappingError, match=f"^{re.escape(message)}$"):
        map_file(mapping, _raw(id=["a"], Monthly=["1"]))


def test_a_type_that_cannot_read_most_of_a_column_means_the_mapping_is_wrong():
    message = (
        "customers.mrr: 2 of 3 values of m cannot be read as float (e.g. 'Yes'); "
        "the mapping does not fit the file"
    )
    with pytest.raises(MappingError, match=re.escape(message)):
        _customers("mrr: {from: m}", m=["Yes", "No", "3"])


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        (["mrr: {from: b}"], "customers: no rule for key column customer_id"),
        (
            ["customer_id: {from: a}", "mmr: {from: b}"],
            "customers.mmr: unknown column of customers; it has customer_id, segment,",
        ),
        (
            ["customer_id: {from: a}", "mrr: {from: b, type: date}"],
            "customers.mrr: type date does not fit the column; use float or int",
        ),
        (["customer_id: {from: a, value: b}"], "customers.customer_id: give exactly one of"),
        (
            ["customer_id: {from: a}", "mrr: {from: b, unit: furlongs}"],
            "customers.mrr: unknown unit 'furlongs'; give a number or one of us->ms,",
        ),
        (
            ["customer_id: {from: a}", "mrr: {from: b, prefix: x-}"],
            "customers.mrr: 'prefix' applies to type id",
        ),
        (
            ["customer_id: {from: a, colour: red}"],
            "tables.customers.columns.customer_id.colour: Extra inputs are not permitted",
        ),
    ],
)
def test_an_invalid_mapping_names_the_column_and_the_problem(rules, message):
    with pytest.raises(MappingError, match="^mapping: " + re.escape(message)):
        _one_table("customers", *rules)


def test_an_unknown_table_and_a_clock_time_without_its_section_are_mapping_errors():
    with pytest.raises(MappingError, match="customerz: unknown canonical table; choose from cells"):
        _one_table("customerz", "customer_id: {from: a}")
    with pytest.raises(MappingError, match=r"cell_telemetry\.ts: type clock_time needs"):
        _one_table("cell_telemetry", "cell_id: {from: c}", "ts: {from: t, type: clock_time}")


# --- import_csv end to end -------------------------------------------------------------------

TINY_MAPPING = """\
name: tiny
file: {encoding: latin-1, error_values: ["#¡VALOR!"]}
clock_time: {anchor: 2024-03-04, key: [Cell]}
tables:
  cells:
    distinct: true
    columns:
      cell_id: {from: Cell}
  cell_telemetry:
    columns:
      cell_id: {from: Cell}
      ts: {from: Time, type: clock_time}
      prb_util_pct: {from: PRB}
"""
TINY_CSV = "Time,Cell,PRB,Extra\r\n10:45,A,1.5,\r\n10:45,A,#¡VALOR!,x\r\n9:00,B,140,y\r\n"


@pytest.fixture
def tiny(tmp_path):
    csv, mapping = tmp_path / "kpi.csv", tmp_path / "tiny.yaml"
    csv.write_bytes(TINY_CSV.encode("latin-1"))
    mapping.write_text(TINY_MAPPING, encoding="utf-8")
    return csv, mapping, tmp_path / "home"


def test_import_csv_writes_admitted_rows_quarantine_and_a_report(tiny):
    csv, mapping, home = tiny
    report = import_csv(csv, mapping, home, AS_OF)
    telemetry = report.tables["cell_telemetry"]
    assert (telemetry.read, telemetry.ingested, telemetry.quarantined) == (3, 1, 2)
    assert telemetry.reasons == {
        "PRB: spreadsheet error '#¡VALOR!'": 1,
        "prb_util_pct outside 0..100 %": 1,
    }
    assert report.tables["cells"].ingested == 2
    assert "file: 1 blank cells in columns no rule reads (Extra 1); left alone" in report.warnings
    store = OfflineStore(home)
    assert store.read("cell_telemetry")["prb_util_pct"].tolist() == [1.5]
    assert store.read_quarantine("cell_telemetry")["source_row"].tolist() == [1, 2]
    assert store.reports() == [report]


def test_telemetry_of_a_cell_missing_from_the_imported_cells_is_quarantined():
    only_cell_a = TINY_MAPPING.replace("cell_id: {from: Cell}", "cell_id: {from: Site}", 1)
    raw = _raw(
        Time=["1:00", "2:00", "3:00"], Cell=["A", "B", "A"], Site=["A", "A", "A"],
        PRB=["1", "2", "3"],
    )  # fmt: skip
    imported = import_frame(parse_mapping(only_cell_a), raw, AS_OF)
    reasons = imported.tables["cell_telemetry"].report.reasons
    assert reasons == {"cell_id not in the cell inventory": 1}


def test_reimporting_the_same_input_rewrites_the_same_bytes(tiny):
    csv, mapping, home = tiny
    import_csv(csv, mapping, home, AS_OF)
    first = {p: p.read_bytes() for p in sorted(home.rglob("*")) if p.is_file()}
    import_csv(csv, mapping, home, AS_OF)
    second = {p: p.read_bytes() for p in sorted(home.rglob("*")) if p.is_file()}
    assert len(first) == 5 and first == second


def test_a_mapping_that_does_not_fit_writes_nothing(tiny):
    csv, mapping, home = tiny
    mapping.write_text(TINY_MAPPING.replace("{from: PRB}", "{from: PRB_DL}"), encoding="utf-8")
    with pytest.raises(MappingError, match="source column 'PRB_DL' is not in the file"):
        import_csv(csv, mapping, home, AS_OF)
    assert not home.exists()


def test_a_wrong_encoding_is_a_mapping_error(tiny):
    csv, mapping, home = tiny
    mapping.write_text(TINY_MAPPING.replace("latin-1", "utf-8"), encoding="utf-8")
    with pytest.raises(MappingError, match=r"cannot read with file\.encoding 'utf-8'"):
        import_csv(csv, mapping, home, AS_OF)
