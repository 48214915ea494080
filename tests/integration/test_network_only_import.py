"""A network-only data set (cells and their KPIs, no customers) through the CLI."""

from textwrap import dedent

import pandas as pd
from typer.testing import CliRunner

from closedloop.cli import app


def test_features_build_from_cells_alone(tmp_path):
    """A network-only data set (cells and their KPIs, no customers) builds its cell features."""
    csv, mapping = tmp_path / "kpis.csv", tmp_path / "kpis.yaml"
    stamps = pd.date_range("2025-01-01", periods=8, freq="15min").strftime("%Y-%m-%dT%H:%M:%SZ")
    pd.DataFrame({"cell": ["a"] * 8, "ts": stamps, "prb": range(8)}).to_csv(csv, index=False)
    mapping.write_text(
        dedent("""
            name: kpis
            tables:
              cells:
                distinct: true
                columns: {cell_id: {from: cell}}
              cell_telemetry:
                columns:
                  cell_id: {from: cell}
                  ts: {from: ts, type: timestamp}
                  interval_minutes: {value: 15}
                  prb_util_pct: {from: prb, type: float}
            """)
    )
    home = ["--home", str(tmp_path / "home")]
    runner = CliRunner()
    imported = runner.invoke(app, [*home, "import-csv", str(csv), "--mapping", str(mapping)])
    assert imported.exit_code == 0, imported.output
    built = runner.invoke(app, [*home, "features", "build", "--as-of", "2025-01-02"])
    assert built.exit_code == 0, built.output
    assert "0 customer-days" in built.output and "2 cell-hours" in built.output
