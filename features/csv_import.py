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

from closedloop.models import SPECS, DataShape
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
UNREAD_SHOWN = 12  # unread columns named in the report; the rest are counted
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
    """Where one canonical column (or attribute) comes from and how its cells are read."""

    from_: str | None = Field(None, alias="from")
    value: Scalar | None = None
    sum: list[str] | None = Field(None, min_length=2)
    difference: list[str] | None = Field(None, min_length=2, max_length=2)
    ratio: list[str] | None = Field(None, min_length=2, max_length=2)
    product: list[str] | None = Field(None, min_length=2)
    row_number: bool = False
    type: Kind | None = None
    values: dict[Text, Scalar | None] | None = None
    classes: bool = Field(
        False,
        description="the column is a multi-class target: 'values' names every class (a source "
        "value it does not list is a MappingError, not a rejected row)",
    )
    blank: Blank = None
    unit: float | str | None = None
    prefix: str = ""
    format: str | None = None
    timezone: str | None = None
    add_minutes: float = 0.0

    def class_names(self) -> list[str]:
        """The classes a multi-class target rule maps to, sorted (none for other rules)."""
        if not self.classes or self.values is None:
            return []
        return sorted({str(_as_text(v)) for v in self.values.values() if v is not None})

    def computed(self) -> tuple[str, list[str]] | None:
        """The compute rule (``sum``, ``difference``, ``ratio``, ``product``) and its columns."""
        for operation in COMPUTE:
            columns = getattr(self, operation)
            if columns is not None:
                return operation, columns
        return None

    def reads(self) -> list[str]:
        """The source columns the rule reads."""
        computed = self.computed()
        return computed[1] if computed else [self.from_] if self.from_ is not None else []

    def sources(self) -> int:
        """How many of from, value, a compute rule and row_number the rule gives."""
        return sum(
            (self.from_ is not None, self.value is not None, self.computed() is not None)
        ) + int(self.row_number)


COMPUTE = ("sum", "difference", "ratio", "product")
ATTRIBUTE_KINDS: tuple[Kind, ...] = ("float", "int", "bool", "string")
ATTRIBUTE_NAME = r"^[a-z][a-z0-9_]*$"


class TableMapping(_Strict):
    columns: dict[str, ColumnRule]
    label: LabelRule | None = None
    distinct: bool = False
    attributes: dict[str, ColumnRule] = Field(
        default_factory=dict,
        description="source columns kept as attributes of the table's entity, beside the "
        "canonical columns: name -> rule with a type of float, int, bool or string",
    )


class JoinRule(_Strict):
    """A related file joined one-to-one onto the rows read so far, on a key column."""

    file: str  # beside the main CSV
    on: str  # the key column, in the file and among the columns read so far
    encoding: str | None = None  # default: the main file's
    delimiter: str | None = None


class AggregateRule(_Strict):
    """A related file of many records per key, summarised into one value per key (columns
    named ``<prefix><what>``, read by rules like any source column; keys without records
    count 0 and sum to 0, the rest are blank)."""

    file: str
    on: str
    prefix: str = Field(pattern=r"^[A-Za-z0-9_ .-]*$")
    encoding: str | None = None
    delimiter: str | None = None
    count: bool = False  # <prefix>count: records per key
    sum: list[str] = Field(default_factory=list)  # <prefix>sum_<col>
    mean: list[str] = Field(default_factory=list)  # <prefix>mean_<col>
    max: list[str] = Field(default_factory=list)  # <prefix>max_<col>
    last: list[str] = Field(default_factory=list)  # <prefix>last_<col>: the last in file order
    pivot: list[str] = Field(default_factory=list)  # <prefix><col>=<value>: records per value


class Mapping(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    description: str = ""
    file: FileOptions = Field(default_factory=FileOptions)
    shape: DataShape = DataShape.TIME_SERIES
    clock_time: ClockTime | None = None
    join: list[JoinRule] = Field(default_factory=list)
    aggregate: list[AggregateRule] = Field(default_factory=list)
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
            keys = [table_mapping.columns[k] for k in table.keys]
            if all(rule.value is not None and rule.sources() == 1 for rule in keys):
                raise ValueError(
                    f"{table_name}: a constant key ({', '.join(table.keys)}) would fold the whole "
                    "file into one row; read it 'from' a column or use 'row_number: true'"
                )
            for column, rule in table_mapping.columns.items():
                problem = _rule_problem(table, column, rule, self.clock_time)
                if problem:
                    raise ValueError(f"{table_name}.{column}: {problem}")
            for name, rule in table_mapping.attributes.items():
                problem = _attribute_problem(table, name, rule)
                if problem:
                    raise ValueError(f"{table_name}.attributes.{name}: {problem}")
        return self

    def destinations(self) -> dict[str, str]:
        """Where the mapping writes and from what: {'table.column' or 'table.attributes.name':
        the source columns it reads, or 'constant' / 'row number'}."""
        out = {}
        for table_name, table_mapping in self.tables.items():
            rules = {**table_mapping.columns}
            rules |= {f"attributes.{n}": r for n, r in table_mapping.attributes.items()}
            for column, rule in rules.items():
                read = ", ".join(rule.reads())
                out[f"{table_name}.{column}"] = read or (
                    "row number" if rule.row_number else "constant"
                )
        return out

    def source_columns(self) -> dict[str, str]:
        """Every file column the mapping reads, with where it is read: {column: 'table.rule'}."""
        used = dict.fromkeys(self.clock_time.key, "clock_time.key") if self.clock_time else {}
        for table_name, table_mapping in self.tables.items():
            if table_mapping.label:
                used.setdefault(table_mapping.label.from_, f"{table_name}.label")
            for column, rule in table_mapping.columns.items():
                for source in rule.reads():
                    used.setdefault(source, f"{table_name}.{column}")
            for name, rule in table_mapping.attributes.items():
                for source in rule.reads():
                    used.setdefault(source, f"{table_name}.attributes.{name}")
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
    kind = kind_of(table, column, rule)
    fitting = _fitting_kinds(table, column)
    if kind not in fitting:
        return f"type {kind} does not fit the column; use {' or '.join(fitting)}"
    if rule.classes:
        targets = {m.label.events: m.label.classes for m in SPECS.values() if m.label.classes}
        if targets.get(table.name) != column:
            where = ", ".join(f"{t}.{c}" for t, c in targets.items())
            return f"'classes' marks a multi-class target column: {where}"
        if rule.from_ is None or not rule.values:
            return "'classes' needs 'from' and 'values' naming the class of every source value"
    return _reading_problem(rule, kind, clock)


def _attribute_problem(table: CanonicalTable, name: str, rule: ColumnRule) -> str | None:
    """What is wrong with an attribute rule, or None."""
    if len(table.keys) != 1:
        return f"{table.name} is not an entity table; attributes go on customers or cells"
    if not re.match(ATTRIBUTE_NAME, name):
        return "an attribute name is lowercase letters, digits and _, starting with a letter"
    if name in table.columns:
        return f"{name} is a canonical column of {table.name}; map it under columns"
    if rule.type not in ATTRIBUTE_KINDS:
        return f"give a type: {', '.join(ATTRIBUTE_KINDS)}"
    return _reading_problem(rule, rule.type, None)


def _reading_problem(rule: ColumnRule, kind: Kind, clock: ClockTime | None) -> str | None:
    """What is wrong with how ``rule`` reads its cells as ``kind``, or None."""
    if rule.sources() != 1:
        return (
            "give exactly one of 'from' (a source column), 'value' (a constant), a compute "
            f"rule ({', '.join(COMPUTE)}) or 'row_number: true'"
        )
    if rule.computed() is not None and kind not in ("float", "int"):
        return f"{rule.computed()[0]} makes a number; its type is float or int, not {kind}"
    if rule.row_number and kind not in ("id", "string", "int", "float"):
        return f"row_number makes an id or a number, not {kind}"
    if rule.from_ is None and rule.values is not None:
        return "'values' rewrites the text of a 'from' column only"
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


DELIMITERS = (",", ";", "\t", "|")


def read_csv(path: Path, options: FileOptions) -> pd.DataFrame:
    """Every cell as text, exactly as in the file (no NA guessing); MappingError when the
    header reads as one column that another delimiter would split."""
    try:
        frame = pd.read_csv(
            path, dtype=str, keep_default_na=False, encoding=options.encoding, sep=options.delimiter
        )
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise MappingError(
            f"{path}: cannot read with file.encoding {options.encoding!r} and file.delimiter "
            f"{options.delimiter!r}: {error}"
        ) from None
    if len(frame.columns) == 1:
        header = str(frame.columns[0])
        other = [d for d in DELIMITERS if d != options.delimiter and d in header]
        if other:
            raise MappingError(
                f"{path.name}: the header reads as one column {header[:60]!r} with file.delimiter "
                f"{options.delimiter!r}; it looks {other[0]!r}-separated: set file.delimiter: "
                f"{other[0]!r}"
            )
    return frame


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
    attributes: pd.DataFrame  # the entity key and each attribute, indexed like raw


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
    reject_blank = blank_rule(table, column, rule) == "reject"
    return _convert(where, kind, reject_blank, rule, raw, mapping)


def convert_attribute(
    table: CanonicalTable, name: str, rule: ColumnRule, raw: pd.DataFrame, mapping: Mapping
) -> Converted:
    """Attribute ``name`` of ``table``'s entity for every row of ``raw``: read like a column."""
    assert rule.type is not None  # guaranteed by the mapping's validation
    reject_blank = rule.blank == "reject"
    return _convert(f"{table.name}.attributes.{name}", rule.type, reject_blank, rule, raw, mapping)


def _computed(
    operation: str, columns: list[str], raw: pd.DataFrame, mapping: Mapping
) -> tuple[pd.Series, list[pd.Series]]:
    """The text of a compute rule's result (blank where an input is blank) and the reasons
    of rows whose inputs are error values or not numbers."""
    rejected, numbers = [], []
    for column in columns:
        text = raw[column].str.strip()
        error = text.isin(mapping.file.error_values)
        rejected.append(_reasons(text[error], f"{column}: spreadsheet error {{value!r}}"))
        value = pd.to_numeric(text.where(~error & text.ne("")), errors="coerce")
        unread = text[value.isna() & ~error & text.ne("")]
        rejected.append(_reasons(unread, f"{column}: cannot read {{value!r}} as a number"))
        numbers.append(value.astype(float))
    if operation == "sum":
        result = sum(numbers[1:], numbers[0])
    elif operation == "product":
        result = numbers[0]
        for more in numbers[1:]:
            result = result * more
    elif operation == "difference":
        result = numbers[0] - numbers[1]
    else:
        result = (numbers[0] / numbers[1].where(numbers[1] != 0)).astype(float)
    text = result.map(lambda v: "" if pd.isna(v) else repr(float(v)))
    return text, rejected


def _convert(
    where: str,
    kind: Kind,
    reject_blank: bool,
    rule: ColumnRule,
    raw: pd.DataFrame,
    mapping: Mapping,
) -> Converted:
    computed, rejected = rule.computed(), []
    if rule.row_number:
        source, text = "row number", (raw[SOURCE_ROW] + 1).astype(str)
    elif computed is not None:
        source = f"{computed[0]} of {', '.join(computed[1])}"
        text, rejected = _computed(*computed, raw, mapping)
    elif rule.from_ is None:
        source, text = "constant", pd.Series(str(_as_text(rule.value)), index=raw.index)
    else:
        source, text = rule.from_, raw[rule.from_].str.strip()
    error = text.isin(mapping.file.error_values)
    blank = text.eq("") & ~error
    rejected.append(_reasons(text[error], f"{source}: spreadsheet error {{value!r}}"))
    if reject_blank:
        rejected.append(_reasons(text[blank], f"{source} is blank"))
    filled = text[~error & ~blank]
    unlisted: list[str] = []
    if rule.values is not None:
        listed = filled.isin(rule.values)
        shown = ", ".join(rule.values)
        rejected.append(_reasons(filled[~listed], f"{source}: {{value!r}} is not one of {shown}"))
        unlisted = filled[~listed].tolist()
        if rule.classes and unlisted:
            missing = ", ".join(repr(v) for v in sorted(set(unlisted)))
            raise MappingError(
                f"{where}: the classes {missing} of {source} are not mapped; list every "
                "class in 'values' (null leaves its entities out of training)"
            )
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
    attributes = {}
    rules = [(column, rule, False) for column, rule in table_mapping.columns.items()]
    rules += [(name, rule, True) for name, rule in table_mapping.attributes.items()]
    for column, rule, is_attribute in rules:
        convert = convert_attribute if is_attribute else convert_column
        converted = convert(table, column, rule, raw, mapping)
        (attributes if is_attribute else columns)[column] = converted.values
        rejections.append(converted.rejected)
        if converted.blanks_as_null:
            where = f"{table_name}.{'attributes.' if is_attribute else ''}{column}"
            read = ", ".join(rule.reads()) or "cells"
            notes.append(f"{where}: {converted.blanks_as_null} blank {read} read as null")
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
    kept = pd.DataFrame(attributes, index=raw.index).loc[rows]
    if attributes:
        kept.insert(0, table.keys[0], normalised.loc[rows, table.keys[0]])
        kept[SOURCE_ROW] = raw.loc[rows, SOURCE_ROW]
    return MappedTable(raw.loc[rows], normalised.loc[rows], rejected, notes, kept)


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
    shown = ", ".join(unread[:UNREAD_SHOWN])
    more = f" and {len(unread) - UNREAD_SHOWN} more" if len(unread) > UNREAD_SHOWN else ""
    return [
        f"file: {len(unread)} columns no rule reads: {shown}{more}",
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
    """Every mapped table after admission, its entities' attributes, and the report."""

    tables: dict[str, Admitted]
    report: IngestReport
    attributes: dict[str, pd.DataFrame]  # table -> key and attributes of the admitted rows


def admitted_attributes(part: MappedTable, admitted: Admitted, key: str) -> pd.DataFrame:
    """The attributes of the rows admission kept: quarantined rows dropped, the first row of a
    key (the one admission keeps) only."""
    quarantine = admitted.quarantine
    quarantined = set(quarantine["source_row"]) if len(quarantine) else set()
    kept = part.attributes[~part.attributes[SOURCE_ROW].isin(quarantined)]
    kept = kept[kept[key].isin(admitted.rows.column(key).to_pylist())]
    kept = kept.sort_values(SOURCE_ROW, kind="stable").drop_duplicates(key, keep="first")
    return kept.drop(columns=[SOURCE_ROW]).sort_values(key).reset_index(drop=True)


def import_frame(mapping: Mapping, raw: pd.DataFrame, as_of: datetime) -> Imported:
    """Map ``raw`` (text cells plus provenance) and admit every table; nothing is written."""
    as_of = as_of if as_of.tzinfo else as_of.replace(tzinfo=UTC)
    mapped = map_file(mapping, raw)
    validator = Validator()
    known_cells: list[str] | None = None
    admitted: dict[str, Admitted] = {}
    attributes: dict[str, pd.DataFrame] = {}
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
        if len(part.attributes.columns):
            key = TABLES[name].keys[0]
            attributes[name] = admitted_attributes(part, admitted[name], key)
    notes = [note for part in mapped.values() for note in part.notes]
    report = IngestReport(
        source=mapping.name,
        shape=mapping.shape,
        classes={
            table: names
            for table, table_mapping in mapping.tables.items()
            for rule in table_mapping.columns.values()
            if (names := rule.class_names())
        },
        mapped=mapping.destinations(),
        tables={name: result.report for name, result in admitted.items()},
        warnings=unread_notes(mapping, raw) + clock_notes(mapping, raw) + notes,
    )
    return Imported(admitted, report, attributes)


def import_csv(csv_path: Path, mapping_path: Path, home: Path, as_of: datetime) -> IngestReport:
    """Import ``csv_path`` into the offline store under ``home`` as the mapping's source.

    Raises MappingError, before anything is written, when the mapping is invalid or does not
    fit the file (FileNotFoundError if either file is missing). Writing replaces the source's
    earlier files, so a re-run on the same input changes nothing.
    """
    mapping = load_mapping(mapping_path)
    raw = read_csv(csv_path, mapping.file)
    raw, notes = related_files(mapping, raw, csv_path.parent)
    store = OfflineStore(home)
    known = None if "cells" in mapping.tables else store.read("cells", ["cell_id"])["cell_id"]
    imported = import_frame(mapping, with_provenance(raw, str(csv_path)), as_of)
    imported.report.warnings[:0] = notes
    if "cell_telemetry" in imported.tables and known is not None:
        cells = imported.tables["cell_telemetry"].rows.column("cell_id").to_pandas()
        unknown = int((~cells.isin(set(known))).sum())
        if unknown:
            imported.report.warnings.append(
                f"cell_telemetry: {unknown} rows for cells not in the inventory (cells); "
                "features build leaves them out until their cells are imported"
            )
    for name, admitted in imported.tables.items():
        store.write(TABLES[name], mapping.name, admitted.rows)
        store.write_quarantine(name, mapping.name, quarantine_table([admitted.quarantine]))
    store.write_attributes(mapping.name, imported.attributes)
    store.write_report(imported.report)
    return imported.report


def _read_related(rule: JoinRule | AggregateRule, mapping: Mapping, folder: Path) -> pd.DataFrame:
    path = folder / rule.file
    if not path.is_file():
        raise MappingError(f"{rule.file}: related file not found beside the CSV ({path})")
    options = FileOptions(
        encoding=rule.encoding or mapping.file.encoding,
        delimiter=rule.delimiter or mapping.file.delimiter,
        error_values=mapping.file.error_values,
    )
    frame = read_csv(path, options)
    if rule.on not in frame.columns:
        raise MappingError(
            f"{rule.file}: no key column {rule.on!r}; it has {', '.join(frame.columns)}"
        )
    frame[rule.on] = frame[rule.on].str.strip()
    return frame


def related_files(
    mapping: Mapping, raw: pd.DataFrame, folder: Path
) -> tuple[pd.DataFrame, list[str]]:
    """``raw`` with the mapping's related files joined (one-to-one) and aggregated (one-to-many)
    in order, and a note per file; MappingError when a file or key does not fit."""
    notes = []
    for rule in mapping.join:
        other = _read_related(rule, mapping, folder)
        if rule.on not in raw.columns:
            raise MappingError(f"join {rule.file}: {rule.on!r} is not among the columns so far")
        repeated = int(other[rule.on].duplicated().sum())
        if repeated:
            raise MappingError(
                f"join {rule.file}: {repeated} repeated {rule.on} values; a join is one-to-one, "
                "use aggregate for many records per key"
            )
        clashing = [c for c in other.columns if c in raw.columns and c != rule.on]
        other = other.drop(columns=clashing)
        matched = int(raw[rule.on].str.strip().isin(other[rule.on]).sum())
        raw = _left_join(raw, other, rule.on)
        note = f"join {rule.file} on {rule.on}: {matched} of {len(raw)} rows matched"
        if clashing:
            note += f"; {', '.join(clashing)} already read, left out"
        notes.append(note)
    for rule in mapping.aggregate:
        other = _read_related(rule, mapping, folder)
        if rule.on not in raw.columns:
            raise MappingError(
                f"aggregate {rule.file}: {rule.on!r} is not among the columns read so far"
            )
        summary = aggregated(rule, other, mapping.file.error_values)
        raw = _left_join(raw, summary, rule.on)
        for column in summary.columns:
            if column != rule.on and (column.endswith("count") or "=" in column):
                raw[column] = raw[column].replace("", "0")
        known = int(raw[rule.on].str.strip().isin(summary[rule.on]).sum())
        notes.append(
            f"aggregate {rule.file} on {rule.on}: {len(other)} records into "
            f"{len(summary.columns) - 1} columns; {known} of {len(raw)} rows have records"
        )
    return raw, notes


def _left_join(raw: pd.DataFrame, other: pd.DataFrame, on: str) -> pd.DataFrame:
    """``raw`` with ``other``'s columns by the (stripped) key; unmatched cells are blank."""
    indexed = other.set_index(on)
    picked = indexed.reindex(raw[on].str.strip().to_numpy())
    picked.index = raw.index
    return pd.concat([raw, picked.fillna("")], axis=1)


def aggregated(rule: AggregateRule, records: pd.DataFrame, error_values: list[str]) -> pd.DataFrame:
    """One row per key of ``records``, as text: count, sums, means, maxima, last values and
    pivot counts, named ``<prefix><what>``."""
    groups = records.groupby(rule.on, sort=True)
    out = pd.DataFrame(index=pd.Index(sorted(records[rule.on].unique()), name=rule.on))
    if rule.count:
        out[f"{rule.prefix}count"] = groups.size()
    for operation in ("sum", "mean", "max"):
        for column in getattr(rule, operation):
            if column not in records.columns:
                raise MappingError(f"aggregate {rule.file}: no column {column!r}")
            text = records[column].str.strip()
            numbers = pd.to_numeric(text.where(~text.isin(error_values)), errors="coerce")
            out[f"{rule.prefix}{operation}_{column}"] = numbers.groupby(records[rule.on]).agg(
                operation
            )
    for column in rule.last:
        out[f"{rule.prefix}last_{column}"] = groups[column].last()
    for column in rule.pivot:
        counts = pd.crosstab(records[rule.on], records[column].str.strip())
        for value in counts.columns:
            out[f"{rule.prefix}{column}={value}"] = counts[value]
    text = out.apply(lambda c: c.map(lambda v: "" if pd.isna(v) else str(v)))
    return text.reset_index()
