"""What the CLI prints for scripts (``--json``) and for people (tables at 80 columns)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel
from rich.console import Console

from closedloop.terminal import emit_json, make_table

KEY = "007851e0c2f14a5b9d3e6f7a8b9c0d1e"


class Colour(StrEnum):
    RED = "red"


@dataclass
class Row:
    at: datetime
    where: Path
    colour: Colour
    score: float


class Model(BaseModel):
    rows: list[Row]


def test_json_for_scripts_is_strict_json_of_plain_values(capsys):
    at = datetime(2026, 3, 1, 12, tzinfo=UTC)
    model = Model(rows=[Row(at, Path("/x"), Colour.RED, 0.5)])
    emit_json({"model": model,
               "rows": [Row(at, Path("/y"), Colour.RED, float("nan"))],
               "worst": float("inf")})  # fmt: skip
    printed = capsys.readouterr().out
    assert "NaN" not in printed and "Infinity" not in printed
    assert json.loads(printed) == {
        "model": model.model_dump(mode="json"),
        "rows": [{"at": at.isoformat(), "where": "/y", "colour": "red", "score": None}],
        "worst": None,
    }


def test_key_columns_stay_whole_on_one_line_at_80_columns():
    table = make_table("t", "key", "what", "why", "status", keys=("key",))
    table.add_row(KEY, "a rather long description " * 3, "because " * 6, "awaiting approval")
    console = Console(width=80, record=True)
    console.print(table)
    lines = console.export_text().splitlines()
    assert any(KEY in line for line in lines)
    assert max(len(line) for line in lines) <= 80
    assert "…" not in "".join(lines)  # the other cells wrap, never cut
