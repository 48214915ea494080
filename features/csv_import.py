"""Import a user's CSV into canonical tables through a declarative column mapping (YAML).

A mapping names the source, says how to read the file and, per canonical table, where each
canonical column comes from::

    name: telco-customer-churn-ibm        # offline-store source name (file names under home)
    description: IBM's Telco customer churn sample
    file: {encoding: utf-8, delimiter: ",", error_values: ["#¡VALOR!"]}
    shape: snapshot                       # one row per entity, label known (default time_series)
    clock_time: {anchor: 2020-01-06, key: [CellName]}   # only if a rule has type clock_time
    tables:
      customers:                          # a key of features.canonical.TABLES
        columns:
          customer_id: {from: customerID, type: id}
          mrr: {from: MonthlyCharges, type: float}
          total_charges: {from: TotalCharges, blank: null}
          segment: {value: consumer}
      cell_fault_labels:
        label: {from: Unusual, positive: ["1"], negative: ["0"]}
        columns: {...}
      cells:
        distinct: true
        columns: {...}

Every cell of a ``from`` rule goes through the same steps, in order: strip whitespace; a
spreadsheet error value rejects the row; a blank cell is null (``blank: null``, the default)
or rejects the row (``blank: reject``, the default for ids; always for key columns);
``values`` rewrites the text (a value it does not list rejects the row); the text is read as
``type`` (by default the canonical column's kind, ``id`` for string keys) and a cell that
does not read rejects the row; numbers are multiplied by ``unit``; times are shifted by
``add_minutes``. Every rejection names the source column and the value; ``admit``
quarantines those rows. A ``value`` rule is a constant read the same way.

Clock times without a date (``type: clock_time``) get a synthetic day: the k-th row (0-based,
file order) with the same ``clock_time.key`` columns and the same time of day is placed on
``anchor + k days``. Time of day is kept and (key, timestamp) is unique, but the order of
days is made up, not read. Full reference: features/mappings/README.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd
import pyarrow as pa
import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from closedloop.models import DataShape
from features.admission import Admitted, admit
from features.canonical import TABLES, CanonicalTable
from features.offline import IngestReport, OfflineStore
from features.quarantine import (
    PROVENANCE,
    SOURCE_ROW,
    quarantine_table,
    with_provenance,
)
from features.validation import Validator

Kind = Literal["id", "string", "float", "int", "bool", "date", "timestamp", "clock_time"]

UNITS: dict[str, float] = {
    "us->ms": 1e-3,
    "ms->s": 1e-3,
    "s->ms": 1e3,
    "ratio->pct": 100.0,
    "pct->ratio": 1e-2,
    "bit->mbit": 1e-6,
    "kbit->mbit": 1e-3,
    "gbit->mbit": 1e3,
    "kb->mb": 1e-3,
    "gb->mb": 1e3,
}
BOOLEANS = {"true": True, "t": True, "yes": True, "y": True, "1": True}
BOOLEANS |= {"false": False, "f": False, "no": False, "n": False, "0": False}
UNREADABLE_SHARE = 0.5  # above this share of unreadable cells the mapping, not the rows, is wrong
UTC_OFFSET = r"(?:Z|[+-]\d\d:?\d\d)$"


class MappingError(ValueError):
    """The mapping does not fit the file (or is not a valid mapping); nothing was written."""


def _as_text(value: object) -> object:
    """YAML scalars where the mapping means text: 1 -> '1', true -> 'true', a date -> ISO."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, int | float):
        return str(value)
    return value


Text = Annotated[str, BeforeValidator(_as_text)]
Blank = Annotated[Literal["null", "reject"] | None, BeforeValidator(lambda v: v or "null")]
Scalar = bool | int | float | datetime | date | str


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class FileOptions(_Strict):
    encoding: str = "utf-8"
    delimiter: str = ","
    error_values: list[Text] = Field(default_factory=list)


class ClockTime(_Strict):
    """Dates for clock times: the k-th repeat of (key, time of day) lands on anchor + k days."""

    anchor: date
    key: list[str]


class LabelRule(_Strict):
    """Rows whose ``from`` is positive become rows of the table; negative ones add none."""

    from_: str = Field(alias="from")
    positive: list[Text]
    negative: list[Text] = Field(default_factory=list)


class ColumnRule(_Strict):
    """Where one canonical column comes from and how its cells are read."""

    from_: str | None = Field(None, alias="from")
    value: Scalar | None = None
    type: Kind | None = None
    values: dict[Text, Scalar | None] | None = None
    blank: Blank = None
    unit: float | str | None = None
    prefix: str = ""
    format: str | None = None
    timezone: str | None = None
    add_minutes: float = 0.0


class TableMapping(_Strict):
    columns: dict[str, ColumnRule]
    label: LabelRule | None = None
    distinct: bool = False


class Mapping(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    description: str = ""
    file: FileOptions = Field(default_factory=FileOptions)
    shape: DataShape = DataShape.TIME_SERIES
    clock_time: ClockTime | None = None
    tables: dict[str, TableMapping] = Field(min_length=1)

    @model_validator(mode="after")
    def _fits_canonical_tables(self) -> Mapping:
        for table_name, table_mapping in self.tables.items():
            if table_name not in TABLES:
                raise ValueError(
                    f"{table_name}: unknown canonical table; choose from {', '.join(TABLES)}"
                )
            table = TABLES[table_name]
            missing_keys = [k for k in table.keys if k not in table_mapping.columns]
            if missing_keys:
                raise ValueError(f"{table_name}: no rule for key column {', '.join(missing_keys)}")
            for column, rule in table_mapping.columns.items():
                problem = _rule_problem(table, column, rule, self.clock_time)
                if problem:
                    raise ValueError(f"{table_name}.{column}: {problem}")
        return self

    def source_columns(self) -> dict[str, str]:
        """Every file column the mapping reads, with where it is read: {column: 'table.rule'}."""
        used = dict.fromkeys(self.clock_time.key, "clock_time.key") if self.clock_time else {}
        for table_name, table_mapping in self.tables.items():
            if table_mapping.label:
                used.setdefault(table_mapping.label.from_, f"{table_name}.label")
            for column, rule in table_mapping.columns.items():
                if rule.from_ is not None:
                    used.setdefault(rule.from_, f"{table_name}.{column}")
        return used


def kind_of(table: CanonicalTable, column: str, rule: ColumnRule) -> Kind:
    """The rule's type, or by default the canonical column's kind (``id`` for string keys)."""
    return rule.type or _fitting_kinds(table, column)[0]


def blank_rule(table: CanonicalTable, column: str, rule: ColumnRule) -> Literal["null", "reject"]:
    """Blank key cells always reject; ids reject unless ``blank: null``; the rest read as null."""
    if column in table.keys:
        return "reject"
    return rule.blank or ("reject" if kind_of(table, column, rule) == "id" else "null")


def _fitting_kinds(table: CanonicalTable, column: str) -> tuple[Kind, ...]:
    arrow_type = table.schema.field(column).type
    if pa.types.is_string(arrow_type):
        return ("id", "string") if column in table.keys else ("string", "id")
    if pa.types.is_floating(arrow_type):
        return ("float", "int")
    if pa.types.is_boolean(arrow_type):
        return ("bool",)
    if pa.types.is_date(arrow_type):
        return ("date",)
    return ("timestamp", "clock_time")


def _rule_problem(
    table: CanonicalTable, column: str, rule: ColumnRule, clock: ClockTime | None
) -> str | None:
    """What is wrong with ``rule`` for ``table.column``, or None."""
    if column not in table.columns:
        return f"unknown column of {table.name}; it has {', '.join(table.columns)}"
    if (rule.from_ is None) == (rule.value is None):
        return "give exactly one of 'from' (a source column) or 'value' (a constant)"
    kind = kind_of(table, column, rule)
    fitting = _fitting_kinds(table, column)
    if kind not in fitting:
        return f"type {kind} does not fit the column; use {' or '.join(fitting)}"
    if rule.value is not None and rule.values is not None:
        return "'values' rewrites source text; it cannot go with a constant 'value'"
    if rule.unit is not None and kind not in ("float", "int"):
        return f"'unit' applies to numbers, not {kind}"
    if isinstance(rule.unit, str) and rule.unit not in UNITS:
        return f"unknown unit {rule.unit!r}; give a number or one of {', '.join(UNITS)}"
    if rule.prefix and kind != "id":
        return "'prefix' applies to type id"
    temporal = ("date", "timestamp", "clock_time")
    if rule.format is not None and kind not in temporal:
        return f"'format' applies to {', '.join(temporal)}"
    if (rule.timezone is not None or rule.add_minutes) and kind not in temporal[1:]:
        return "'timezone' and 'add_minutes' apply to timestamp and clock_time"
    if rule.timezone is not None and not _is_time_zone(rule.timezone):
        return f"unknown time zone {rule.timezone!r}"
    if kind == "clock_time" and clock is None:
        return "type clock_time needs a top-level 'clock_time: {anchor, key}' section"
    return None


def _is_time_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


class _Yaml12Loader(yaml.SafeLoader):
    """Safe YAML in which only true/false are booleans, so Yes, No, On and Off stay text."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def parse_mapping(text: str, origin: str = "mapping") -> Mapping:
    """A mapping from YAML text; any problem is a MappingError naming where it is."""
    try:
        document = yaml.load(text, Loader=_Yaml12Loader)  # a SafeLoader subclass
        return Mapping.model_validate(document)
    except yaml.YAMLError as error:
        raise MappingError(f"{origin}: not valid YAML: {error}") from None
    except ValidationError as error:
        problems = []
        for e in error.errors():
            where = ".".join(str(p) for p in e["loc"])
            message = e["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {message}" if where else message)
        raise MappingError(f"{origin}: {'; '.join(problems)}") from None


def load_mapping(path: Path) -> Mapping:
    return parse_mapping(path.read_text(encoding="utf-8"), str(path))


def read_csv(path: Path, options: FileOptions) -> pd.DataFrame:
    """Every cell as text, exactly as in the file (no NA guessing)."""
    try:
        return pd.read_csv(
            path, dtype=str, keep_default_na=False, encoding=options.encoding, sep=options.delimiter
        )
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise MappingError(
            f"{path}: cannot read with file.encoding {options.encoding!r} and file.delimiter "
            f"{options.delimiter!r}: {error}"
        ) from None


@dataclass(frozen=True)
class Converted:
    """One canonical column read from the file: values, rejections and blanks read as null."""

    values: pd.Series
    rejected: pd.Series
    blanks_as_null: int


@dataclass(frozen=True)
class MappedTable:
    """One canonical table's share of the file, ready for ``admit``."""

    raw: pd.DataFrame  # the source rows meant for the table, with provenance
    normalised: pd.DataFrame  # canonical columns plus _source_row, indexed like raw
    rejected: pd.Series  # reasons for rows of raw that could not be converted
    notes: list[str]  # rules that touched rows, with counts


def _reasons(cells: pd.Series, template: str) -> pd.Series:
    """One reason per cell, ``template`` formatted with the cell's text as ``value``."""
    return pd.Series([template.format(value=v) for v in cells], index=cells.index, dtype=str)


def _reasons_per_row(parts: list[pd.Series]) -> pd.Series:
    """One '; '-joined reason per row, each distinct reason once (two rules may read one cell)."""
    present = [part for part in parts if not part.empty]
    if not present:
        return pd.Series(dtype=str)
    stacked = pd.concat(present)
    return stacked.groupby(level=0, sort=True).agg(lambda row: "; ".join(dict.fromkeys(row)))


def _check_readable(where: str, source: str, kind: str, failed: list[str], out_of: int) -> None:
    """MappingError when most cells fail: then the mapping is wrong, not the rows."""
    if out_of and len(failed) / out_of > UNREADABLE_SHARE:
        raise MappingError(
            f"{where}: {len(failed)} of {out_of} values of {source} cannot be read as {kind} "
            f"(e.g. {failed[0]!r}); the mapping does not fit the file"
        )


def convert_column(
    table: CanonicalTable, column: str, rule: ColumnRule, raw: pd.DataFrame, mapping: Mapping
) -> Converted:
    """``table.column`` for every row of ``raw`` by ``rule``; see the module docstring."""
    where, kind = f"{table.name}.{column}", kind_of(table, column, rule)
    if rule.from_ is None:
        source, text = "constant", pd.Series(str(_as_text(rule.value)), index=raw.index)
    else:
        source, text = rule.from_, raw[rule.from_].str.strip()
    error = text.isin(mapping.file.error_values)
    blank = text.eq("") & ~error
    reject_blank = blank_rule(table, column, rule) == "reject"
    rejected = [_reasons(text[error], f"{source}: spreadsheet error {{value!r}}")]
    if reject_blank:
        rejected.append(_reasons(text[blank], f"{source} is blank"))
    filled = text[~error & ~blank]
    unlisted: list[str] = []
    if rule.values is not None:
        listed = filled.isin(rule.values)
        shown = ", ".join(rule.values)
        rejected.append(_reasons(filled[~listed], f"{source}: {{value!r}} is not one of {shown}"))
        unlisted = filled[~listed].tolist()
        rewritten = filled[listed].map(rule.values)
        filled = rewritten[rewritten.notna()].map(lambda v: str(_as_text(v)))
    parsed = _parse(kind, filled, rule, raw, mapping.clock_time)
    unread = filled[parsed.isna()]
    rejected.append(_reasons(unread, f"{source}: cannot read {{value!r}} as {kind}"))
    failed = [*unlisted, *unread]
    _check_readable(where, source, kind, failed, len(filled) + len(unlisted))
    return Converted(
        values=parsed.reindex(raw.index),
        rejected=_reasons_per_row(rejected),
        blanks_as_null=0 if reject_blank else int(blank.sum()),
    )


def _parse(
    kind: Kind, text: pd.Series, rule: ColumnRule, raw: pd.DataFrame, clock: ClockTime | None
) -> pd.Series:
    """``text`` read as ``kind``; NaN, None or NaT where a cell does not read."""
    scale = UNITS[rule.unit] if isinstance(rule.unit, str) else (rule.unit or 1.0)
    shift = pd.Timedelta(minutes=rule.add_minutes)
    if kind == "id":
        return rule.prefix + text
    if kind == "string":
        return text
    if kind in ("float", "int"):
        numbers = pd.to_numeric(text, errors="coerce").astype(float)
        return (numbers if kind == "float" else numbers.where(numbers % 1 == 0)) * scale
    if kind == "bool":
        return text.str.lower().map(BOOLEANS)
    if kind == "date":
        return pd.to_datetime(text, format=rule.format or "ISO8601", errors="coerce").dt.date
    if kind == "timestamp":
        return _timestamps(text, rule.format or "ISO8601", rule.timezone) + shift
    assert clock is not None  # guaranteed by the mapping's validation
    wall_clock = _synthetic_days(text, rule.format or "%H:%M", raw, clock)
    return _to_utc(wall_clock, rule.timezone) + shift


def _to_utc(wall_clock: pd.Series, timezone: str | None) -> pd.Series:
    """Naive wall-clock times in ``timezone`` (UTC if None) as UTC; NaT where DST skips them."""
    local = wall_clock.dt.tz_localize(timezone or "UTC", ambiguous="NaT", nonexistent="NaT")
    return local.dt.tz_convert("UTC").dt.as_unit("ms")


def _timestamps(text: pd.Series, fmt: str, timezone: str | None) -> pd.Series:
    """Values with a UTC offset are converted from it; the rest are wall-clock in ``timezone``."""
    has_offset = text.str.contains(UTC_OFFSET)
    utc = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ms, UTC]")
    with_offset = pd.to_datetime(text[has_offset], format=fmt, errors="coerce", utc=True)
    utc[has_offset] = with_offset.dt.as_unit("ms")
    wall_clock = pd.to_datetime(text[~has_offset], format=fmt, errors="coerce")
    utc[~has_offset] = _to_utc(wall_clock, timezone)
    return utc


def _synthetic_days(text: pd.Series, fmt: str, raw: pd.DataFrame, clock: ClockTime) -> pd.Series:
    """Clock times as wall-clock datetimes: the k-th repeat of (key, time) is on anchor + k."""
    times = pd.to_datetime(text, format=fmt, errors="coerce")
    time_of_day = times - times.dt.normalize()
    keys = [raw.loc[text.index, key].str.strip() for key in clock.key]
    repeat = time_of_day.groupby([*keys, time_of_day], dropna=False, sort=False).cumcount()
    return pd.Timestamp(clock.anchor) + pd.to_timedelta(repeat, unit="D") + time_of_day


def _label_rows(
    table: str, label: LabelRule, raw: pd.DataFrame
) -> tuple[pd.Index, pd.Series, str | None]:
    """Rows that belong to a label table (positive, or unreadable), their reasons and a note."""
    text = raw[label.from_].str.strip()
    positive, negative = text.isin(label.positive), text.isin(label.negative)
    other = text[~positive & ~negative]
    shown = f"positive {', '.join(label.positive)}; negative {', '.join(label.negative) or '-'}"
    reasons = _reasons(other, f"{label.from_}: {{value!r}} is not a label value ({shown})")
    _check_readable(f"{table}.label", label.from_, "a label", other.tolist(), len(text))
    note = None
    if negative.any():
        values = ", ".join(label.negative)
        note = f"{table}: {int(negative.sum())} rows with {label.from_} = {values} add no row"
    return text.index[~negative], reasons, note


def map_table(table_name: str, mapping: Mapping, raw: pd.DataFrame) -> MappedTable:
    """The rows of ``raw`` meant for one canonical table, converted by the mapping's rules."""
    table, table_mapping = TABLES[table_name], mapping.tables[table_name]
    columns, rejections, notes = {}, [], []
    for column, rule in table_mapping.columns.items():
        converted = convert_column(table, column, rule, raw, mapping)
        columns[column] = converted.values
        rejections.append(converted.rejected)
        if converted.blanks_as_null:
            notes.append(
                f"{table_name}.{column}: {converted.blanks_as_null} blank {rule.from_} read as null"
            )
    normalised = pd.DataFrame(columns, index=raw.index)
    rows = raw.index
    if table_mapping.label:
        rows, label_reasons, note = _label_rows(table_name, table_mapping.label, raw)
        rejections.append(label_reasons)
        notes += [note] if note else []
    rejected = _reasons_per_row(rejections)
    rejected = rejected[rejected.index.isin(rows)]
    if table_mapping.distinct:
        convertible = rows.difference(rejected.index)
        repeats = normalised.loc[convertible].duplicated(keep="first")
        rows = rows.drop(repeats.index[repeats])
        if repeats.any():
            notes.append(
                f"{table_name}: {int(repeats.sum())} rows equal to an earlier row in every mapped "
                f"column folded into it (distinct), leaving {int((~repeats).sum())}"
            )
    normalised[SOURCE_ROW] = raw[SOURCE_ROW]
    return MappedTable(raw.loc[rows], normalised.loc[rows], rejected, notes)


def clock_notes(mapping: Mapping, raw: pd.DataFrame) -> list[str]:
    """One line per clock-time source column: how many times got which synthetic days."""
    clock = mapping.clock_time
    if clock is None:
        return []
    rules = {
        rule.from_: rule
        for table_mapping in mapping.tables.values()
        for rule in table_mapping.columns.values()
        if rule.type == "clock_time" and rule.from_ is not None
    }
    notes = []
    for source, rule in rules.items():
        text = raw[source].str.strip()
        filled = text[text.ne("") & ~text.isin(mapping.file.error_values)]
        times = _synthetic_days(filled, rule.format or "%H:%M", raw, clock).dropna()
        days = times.dt.normalize().nunique()
        notes.append(
            f"{source}: {len(times)} clock times placed on {days} synthetic days from "
            f"{clock.anchor}: the k-th row in file order with the same "
            f"({', '.join(clock.key)}, {source}) is day k; the day order is made up"
        )
    return notes


def unread_notes(mapping: Mapping, raw: pd.DataFrame) -> list[str]:
    """Columns the mapping leaves alone, and the blanks and error values only they hold."""
    read = mapping.source_columns()
    unread = [c for c in raw.columns if c not in read and c not in PROVENANCE]
    if not unread:
        return []
    text = raw[unread].apply(lambda column: column.str.strip())
    errors = ", ".join(mapping.file.error_values)
    return [
        f"file: columns no rule reads: {', '.join(unread)}",
        *_per_column(text.isin(mapping.file.error_values).sum(), f"error values ({errors})"),
        *_per_column(text.eq("").sum(), "blank cells"),
    ]


def _per_column(counts: pd.Series, what: str) -> list[str]:
    counts = counts[counts > 0]
    if counts.empty:
        return []
    per_column = ", ".join(f"{column} {n}" for column, n in counts.items())
    return [f"file: {counts.sum()} {what} in columns no rule reads ({per_column}); left alone"]


def map_file(mapping: Mapping, raw: pd.DataFrame) -> dict[str, MappedTable]:
    """Every mapped table in canonical order (cells first); MappingError if the file misfits."""
    present = [c for c in raw.columns if c not in PROVENANCE]
    for column, where in mapping.source_columns().items():
        if column not in present:
            raise MappingError(
                f"{where}: source column {column!r} is not in the file; it has {', '.join(present)}"
            )
    return {name: map_table(name, mapping, raw) for name in TABLES if name in mapping.tables}


@dataclass(frozen=True)
class Imported:
    """Every mapped table after admission, and the report of the import."""

    tables: dict[str, Admitted]
    report: IngestReport


def import_frame(mapping: Mapping, raw: pd.DataFrame, as_of: datetime) -> Imported:
    """Map ``raw`` (text cells plus provenance) and admit every table; nothing is written."""
    as_of = as_of if as_of.tzinfo else as_of.replace(tzinfo=UTC)
    mapped = map_file(mapping, raw)
    validator = Validator()
    known_cells: list[str] | None = None
    admitted: dict[str, Admitted] = {}
    for name, part in mapped.items():
        admitted[name] = admit(
            TABLES[name],
            part.raw,
            part.normalised,
            part.rejected,
            validator,
            as_of,
            known_cells=known_cells,
            arrival=SOURCE_ROW,
        )
        if name == "cells":
            known_cells = admitted[name].rows.column("cell_id").to_pylist()
    notes = [note for part in mapped.values() for note in part.notes]
    report = IngestReport(
        source=mapping.name,
        shape=mapping.shape,
        tables={name: result.report for name, result in admitted.items()},
        warnings=unread_notes(mapping, raw) + clock_notes(mapping, raw) + notes,
    )
    return Imported(admitted, report)


def import_csv(csv_path: Path, mapping_path: Path, home: Path, as_of: datetime) -> IngestReport:
    """Import ``csv_path`` into the offline store under ``home`` as the mapping's source.

    Raises MappingError, before anything is written, when the mapping is invalid or does not
    fit the file (FileNotFoundError if either file is missing). Writing replaces the source's
    earlier files, so a re-run on the same input changes nothing.
    """
    mapping = load_mapping(mapping_path)
    raw = with_provenance(read_csv(csv_path, mapping.file), str(csv_path))
    imported = import_frame(mapping, raw, as_of)
    store = OfflineStore(home)
    for name, admitted in imported.tables.items():
        store.write(TABLES[name], mapping.name, admitted.rows)
        store.write_quarantine(name, mapping.name, quarantine_table([admitted.quarantine]))
    store.write_report(imported.report)
    return imported.report
