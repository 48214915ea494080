"""Every signal has a place: attributes beside the canonical columns, computed rules, row
numbers, related files joined one-to-one and aggregated one-to-many."""

from datetime import UTC, datetime
from textwrap import dedent

import pandas as pd
import pytest

from features.csv_import import MappingError, import_csv, import_frame, map_table, parse_mapping
from features.offline import OfflineStore
from features.quarantine import with_provenance

AS_OF = datetime(2025, 1, 1, tzinfo=UTC)


def _mapping(text: str):
    return parse_mapping("name: test\n" + dedent(text))


def _raw(**columns: list[str]) -> pd.DataFrame:
    return with_provenance(pd.DataFrame(columns, dtype=str), "test.csv")


CUSTOMERS = """
tables:
  customers:
    columns:
      customer_id: {from: id}
    attributes:
"""


def _attributes(*rules: str):
    return _mapping(CUSTOMERS + "".join(f"      {rule}\n" for rule in rules))


def test_attributes_are_read_typed_and_quarantine_their_rows_like_columns():
    mapping = _attributes(
        "partner: {from: Partner, type: bool}",
        "payment: {from: Pay, type: string}",
        "day_minutes: {from: Day, type: float}",
    )
    raw = _raw(
        id=["a", "b", "c"], Partner=["Yes", "No", "No"], Pay=["card", "", "bank"],
        Day=["1.5", "2", "lots"],
    )  # fmt: skip
    imported = import_frame(mapping, raw, AS_OF)
    assert imported.report.tables["customers"].quarantined == 1
    assert imported.report.tables["customers"].reasons == {"Day: cannot read 'lots' as float": 1}
    kept = imported.attributes["customers"]
    kept = kept.astype(object).where(kept.notna(), None)
    assert kept.to_dict("list") == {
        "customer_id": ["a", "b"],
        "partner": [True, False],
        "payment": ["card", None],
        "day_minutes": [1.5, 2.0],
    }
    assert "customers.attributes.payment: 1 blank Pay read as null" in imported.report.warnings
    assert imported.report.mapped["customers.attributes.day_minutes"] == "Day"


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        ("mrr: {from: X, type: float}", "mrr is a canonical column of customers"),
        ("Day: {from: X, type: float}", "lowercase letters"),
        ("day: {from: X}", "give a type: float, int, bool, string"),
        ("day: {from: X, value: 1, type: float}", "give exactly one of"),
        ("day: {sum: [X, Y], type: string}", "sum makes a number"),
    ],
)
def test_bad_attribute_rules_are_named(rule, problem):
    with pytest.raises(MappingError, match=problem):
        _attributes(rule)


def test_compute_rules_sum_difference_ratio_product_with_units_and_row_numbers():
    mapping = _attributes(
        "charges: {sum: [Day, Eve, Night], type: float}",
        "net: {difference: [Day, Eve], type: float}",
        "share: {ratio: [Day, Night], type: float}",
        "cost: {product: [Day, Eve], type: float, unit: 0.5}",
        "line: {row_number: true, type: int}",
    )
    raw = _raw(id=["a", "b", "c"], Day=["1", "2", "x"], Eve=["2", "", "1"], Night=["4", "0", "1"])
    part = map_table("customers", mapping, raw)
    table = part.attributes
    assert table["charges"][0] == 7.0 and pd.isna(table["charges"][1])
    assert table["net"][0] == -1.0 and table["share"][0] == 0.25 and pd.isna(table["share"][1])
    assert table["cost"][0] == 1.0 and table["line"].tolist() == [1.0, 2.0, 3.0]
    assert part.rejected.to_dict() == {2: "Day: cannot read 'x' as a number"}


def test_row_number_gives_an_id_to_a_file_without_one(tmp_path):
    mapping = _mapping(
        """
        tables:
          customers:
            columns:
              customer_id: {row_number: true, type: id, prefix: "row-"}
              mrr: {from: Charge, type: float}
        """
    )
    raw = _raw(Charge=["10", "20"])
    imported = import_frame(mapping, raw, AS_OF)
    ids = imported.tables["customers"].rows.column("customer_id").to_pylist()
    assert ids == ["row-1", "row-2"]


def test_related_files_join_one_to_one_and_aggregate_one_to_many(tmp_path):
    (tmp_path / "main.csv").write_text("id,zip\na,1\nb,2\nc,9\n")
    (tmp_path / "zips.csv").write_text("zip,population\n1,100\n2,200\n")
    (tmp_path / "calls.csv").write_text(
        "id,minutes,kind\na,3,voice\na,5,sms\nb,1,voice\nb,bad,voice\n"
    )
    mapping_path = tmp_path / "m.yaml"
    mapping_path.write_text(
        dedent(
            """
            name: joined
            join: [{file: zips.csv, on: zip}]
            aggregate:
              - {file: calls.csv, on: id, prefix: "calls_", count: true, sum: [minutes],
                 max: [minutes], last: [kind], pivot: [kind]}
            tables:
              customers:
                columns:
                  customer_id: {from: id}
                attributes:
                  population: {from: population, type: float}
                  calls: {from: calls_count, type: int}
                  minutes: {from: calls_sum_minutes, type: float}
                  longest: {from: calls_max_minutes, type: float}
                  last_kind: {from: calls_last_kind, type: string}
                  voice_calls: {from: "calls_kind=voice", type: int}
            """
        )
    )
    report = import_csv(tmp_path / "main.csv", mapping_path, tmp_path / "home", AS_OF)
    (attributes,) = OfflineStore(tmp_path / "home").read_attributes("customers").values()
    attributes = attributes.astype(object).where(attributes.notna(), None)
    assert attributes.to_dict("list") == {
        "customer_id": ["a", "b", "c"],
        "population": [100.0, 200.0, None],
        "calls": [2.0, 2.0, 0.0],
        "minutes": [8.0, 1.0, None],
        "longest": [5.0, 1.0, None],
        "last_kind": ["sms", "voice", None],
        "voice_calls": [1.0, 2.0, 0.0],
    }
    assert "join zips.csv on zip: 2 of 3 rows matched" in report.warnings
    assert any(w.startswith("aggregate calls.csv on id: 4 records into") for w in report.warnings)


def test_a_join_on_a_repeated_key_is_refused(tmp_path):
    (tmp_path / "main.csv").write_text("id\na\n")
    (tmp_path / "other.csv").write_text("id,x\na,1\na,2\n")
    mapping_path = tmp_path / "m.yaml"
    mapping_path.write_text(
        "name: j\njoin: [{file: other.csv, on: id}]\n"
        "tables: {customers: {columns: {customer_id: {from: id}}}}\n"
    )
    with pytest.raises(MappingError, match="1 repeated id values; a join is one-to-one"):
        import_csv(tmp_path / "main.csv", mapping_path, tmp_path / "home", AS_OF)


# --- errors a user can act on ----------------------------------------------------------------


def test_a_header_that_looks_semicolon_separated_says_which_delimiter_to_set(tmp_path):
    (tmp_path / "eu.csv").write_text("id;charge\na;1,5\n")
    (tmp_path / "m.yaml").write_text(
        "name: eu\ntables: {customers: {columns: {customer_id: {from: id}}}}\n"
    )
    with pytest.raises(MappingError, match=r"looks ';'-separated: set file.delimiter: ';'"):
        import_csv(tmp_path / "eu.csv", tmp_path / "m.yaml", tmp_path / "home", AS_OF)


def test_a_constant_key_is_refused_before_it_folds_the_file():
    with pytest.raises(MappingError, match=r"a constant key \(customer_id\) would fold the whole"):
        _mapping("tables: {customers: {columns: {customer_id: {value: x}}}}\n")


def test_unread_columns_are_counted_and_only_the_first_named():
    names = {f"kpi_{i:03d}": ["1"] for i in range(30)}
    imported = import_frame(
        _attributes("k0: {from: kpi_000, type: float}"), _raw(id=["a"], **names), AS_OF
    )
    assert (
        "file: 29 columns no rule reads: kpi_001, kpi_002, kpi_003, kpi_004, kpi_005, kpi_006, "
        "kpi_007, kpi_008, kpi_009, kpi_010, kpi_011, kpi_012 and 17 more"
    ) in imported.report.warnings
