"""A multi-class target in a mapping: its class column names every class, or the import stops
naming the classes left out."""

from datetime import UTC, datetime
from textwrap import dedent

import pandas as pd
import pytest

from features.csv_import import MappingError, import_frame, parse_mapping
from features.quarantine import with_provenance

AS_OF = datetime(2025, 1, 1, tzinfo=UTC)
LABELS = """
name: reasons
shape: snapshot
tables:
  churn_labels:
    columns:
      customer_id: {from: id}
      churned: {from: left, type: bool}
      category:
        from: why
        classes: true
        values: {None: stayed, Competitor: competitor, Price: price, Unknown: null}
"""


def _raw(why: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "id": [f"c{i}" for i in range(len(why))],
            "left": ["no" if w == "None" else "yes" for w in why],
            "why": why,
        }
    )
    return with_provenance(frame, "reasons.csv")


def test_the_report_names_the_classes_and_each_row_keeps_its_class():
    imported = import_frame(
        parse_mapping(LABELS), _raw(["None", "Price", "Competitor", "Unknown"]), AS_OF
    )
    assert imported.report.classes == {"churn_labels": ["competitor", "price", "stayed"]}
    rows = imported.tables["churn_labels"].rows.to_pandas()
    assert rows.category.tolist()[:3] == ["stayed", "price", "competitor"]
    assert rows.category.isna().tolist() == [False, False, False, True]


def test_a_class_left_out_of_values_is_a_mapping_error_naming_it():
    with pytest.raises(MappingError) as error:
        import_frame(
            parse_mapping(LABELS), _raw(["None", "Attitude", "Price", "Other", "Other"]), AS_OF
        )
    assert str(error.value).startswith(
        "churn_labels.category: the classes 'Attitude', 'Other' of why are not mapped"
    )


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        (
            "churned: {from: left, type: bool, classes: true, values: {yes: true}}",
            "churn_labels.churned: 'classes' marks a multi-class target column: "
            "churn_labels.category, cell_fault_labels.kind",
        ),
        (
            "category: {from: why, classes: true}",
            "churn_labels.category: 'classes' needs 'from' and 'values'",
        ),
    ],
)
def test_classes_go_on_a_class_column_with_values(rule, problem):
    text = dedent(f"""
        name: reasons
        tables:
          churn_labels:
            columns:
              customer_id: {{from: id}}
              {rule}
        """)
    with pytest.raises(MappingError) as error:
        parse_mapping(text)
    assert problem in str(error.value)
