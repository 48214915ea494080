"""Arrow helpers shared by every documented schema in the project."""

from __future__ import annotations

import pyarrow as pa

UTC_MS = pa.timestamp("ms", tz="UTC")


def described(name: str, type_: pa.DataType, description: str, nullable: bool = False) -> pa.Field:
    """A field whose description travels with it in the schema (and so in every Parquet file)."""
    return pa.field(name, type_, nullable=nullable, metadata={"description": description})
