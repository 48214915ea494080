"""CLI edge of the feature stage: ingest, import-csv and ``closedloop features ...``.

Feast and Great Expectations are slow to import, so they are imported inside the commands
that need them; ``closedloop --help`` stays quick.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from closedloop.settings import Settings
from closedloop.terminal import AsJson, UserError, console, emit_json, make_table, settings_of
from closedloop.world.schemas import MANIFEST_PATH
from features.offline import IngestReport

features_app = typer.Typer(help="Build, register, materialise and look up features (Feast).")


def _instant(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UserError(f"{option} must be an ISO date or time, not {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def world_end(settings: Settings) -> datetime:
    """The instant the world on disk ends: the natural 'now' for ingesting it."""
    manifest = settings.world_dir / MANIFEST_PATH
    if not manifest.is_file():
        raise UserError(f"no world in {settings.world_dir}; run 'closedloop world generate' first")
    config = json.loads(manifest.read_text())["config"]
    start = datetime.fromisoformat(config["start"]).replace(tzinfo=UTC)
    return start + timedelta(days=config["days"])


def print_ingest_report(report: IngestReport) -> None:
    table = Table(title=f"ingested source '{report.source}'")
    for column in ("table", "read", "ingested", "quarantined", "why quarantined"):
        table.add_column(
            column, justify="left" if column in ("table", "why quarantined") else "right"
        )
    for name, counts in report.tables.items():
        reasons = "\n".join(f"{n:,} {reason}" for reason, n in counts.reasons.items())
        table.add_row(
            name, f"{counts.read:,}", f"{counts.ingested:,}", f"{counts.quarantined:,}", reasons
        )
    console.print(table)
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/] {warning}")


def run_ingest(settings: Settings, as_of: datetime | None = None) -> IngestReport:
    from features.ingest import ingest_world

    report = ingest_world(settings.world_dir, settings.home, as_of or world_end(settings))
    print_ingest_report(report)
    return report


def ingest(
    ctx: typer.Context,
    as_of: Annotated[
        str | None, typer.Option(help="Validate as of this UTC time (default: the world's end)")
    ] = None,
) -> None:
    """Normalise, validate and store the world's raw tables; quarantine what fails."""
    run_ingest(settings_of(ctx), _instant(as_of, "--as-of"))


def import_csv(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="The CSV file to import")],
    mapping: Annotated[Path, typer.Option(help="Column mapping (YAML), see features/mappings/")],
    as_of: Annotated[str | None, typer.Option(help="Validate as of (default: now, UTC)")] = None,
) -> None:
    """Map your own CSV into the canonical tables, validate it and store it."""
    from features.csv_import import MappingError
    from features.csv_import import import_csv as run_import

    for file, what in ((path, "CSV file"), (mapping, "mapping")):
        if not file.is_file():
            raise UserError(f"{what} not found: {file}")
    moment = _instant(as_of, "--as-of") or datetime.now(UTC)
    try:
        report = run_import(path, mapping, settings_of(ctx).home, moment)
    except MappingError as error:
        raise UserError(f"{mapping.name} does not fit {path.name}: {error}") from None
    print_ingest_report(report)


def run_build(settings: Settings, as_of: datetime | None = None):
    from features.offline import OfflineStore
    from features.pipeline import build_features

    store = OfflineStore(settings.home)
    if not any(any(store.table_path(t).glob("*.parquet")) for t in ("customers", "cells")):
        raise UserError(
            f"no customers or cells in the offline store {settings.paths.offline}; run "
            "'closedloop ingest' (or 'closedloop import-csv') first"
        )
    try:
        built = build_features(settings.home, as_of or datetime.now(UTC))
    except ValueError as error:
        raise UserError(f"cannot build features: {error}") from None
    console.print(
        f"feature tables: {built.customer_rows:,} customer-days -> {built.paths.customer_daily}, "
        f"{built.cell_rows:,} cell-hours -> {built.paths.cell_hourly}"
    )
    for table, rows in built.orphans.items():
        inventory = "cells" if table == "cell_telemetry" else "customers"
        console.print(
            f"[yellow]warning:[/] {rows:,} {table} rows are for entities not in {inventory}; "
            "no feature sees them (import their inventory first)"
        )
    return built


@features_app.command("build")
def build(
    ctx: typer.Context,
    as_of: Annotated[
        str | None, typer.Option(help="Snapshot time for sources with no days")
    ] = None,
) -> None:
    """Compute the windowed feature tables from the offline store."""
    run_build(settings_of(ctx), _instant(as_of, "--as-of"))


def run_apply(settings: Settings):
    from features.pipeline import apply_repository

    repo = apply_repository(settings)
    console.print(
        f"applied: {len(repo.views)} feature views, services {', '.join(repo.services)} "
        f"-> {settings.paths.feast}"
    )
    return repo


@features_app.command("apply")
def apply(ctx: typer.Context) -> None:
    """Register entities, sources, views and services in the Feast registry."""
    run_apply(settings_of(ctx))


def run_materialize(settings: Settings, start: datetime, end: datetime, stock: bool = False):
    from features.pipeline import materialize as load

    try:
        loaded = load(settings, start, end, stock)
    except FileNotFoundError as error:
        raise UserError(str(error)) from None
    table = Table(title=f"online store loaded with rows stamped {start:%Y-%m-%d} .. {end:%Y-%m-%d}")
    for column in ("view", "entities", "values"):
        table.add_column(column, justify="right" if column != "view" else "left")
    for item in loaded:
        table.add_row(item.view, f"{item.entities:,}", f"{item.values:,}")
    console.print(table if loaded else "materialised with Feast's own path")
    return loaded


@features_app.command("materialize")
def materialize(
    ctx: typer.Context,
    start: Annotated[
        str | None, typer.Option(help="Oldest row to load (default: end - 90 days)")
    ] = None,
    end: Annotated[str | None, typer.Option(help="Newest row to load (default: now, UTC)")] = None,
    stock: Annotated[bool, typer.Option(help="Use Feast's own materialisation path")] = False,
) -> None:
    """Load the newest feature rows into the online store."""
    until = _instant(end, "--end") or datetime.now(UTC)
    since = _instant(start, "--start") or until - timedelta(days=90)
    if since > until:
        raise UserError(f"--start {since:%Y-%m-%d} is after --end {until:%Y-%m-%d}")
    run_materialize(settings_of(ctx), since, until, stock)


def run_lookup(
    settings: Settings,
    service: str,
    entity_id: str,
    now: datetime | None = None,
    as_json: bool = False,
):
    from features.backends import OnlineStoreError, online_store

    try:
        readers = online_store(settings).readers()
    except (FileNotFoundError, OnlineStoreError) as error:
        raise UserError(str(error)) from None
    try:
        if service not in readers:
            known = ", ".join(readers)
            raise UserError(f"unknown feature service {service!r}; choose from {known}")
        reader = readers[service]
        row = reader.read(entity_id, now or datetime.now(UTC))
    finally:
        for opened in readers.values():
            opened.close()
    if not row.known:
        raise UserError(f"no features online for {reader.layout.join_key} {entity_id!r}")
    if as_json:
        emit_json(
            {
                "service": service, reader.layout.join_key: entity_id, "values": row.values,
                "as_of": row.event_times, "stale_views": sorted(row.stale_views),
            }
        )  # fmt: skip
        return row
    shown = make_table(f"{service} for {entity_id}", "feature", "value", right=("value",))
    for name, value in row.values.items():
        shown.add_row(
            name,
            "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value),
        )
    console.print(shown)
    for view, when in row.event_times.items():
        flag = " [yellow](stale)[/]" if view in row.stale_views else ""
        console.print(
            f"{view}: as of {when:%Y-%m-%d %H:%M} UTC{flag}" if when else f"{view}: missing"
        )
    return row


@features_app.command("list")
def list_features(
    ctx: typer.Context,
    service: Annotated[
        str | None, typer.Argument(help="Feature service (default: list the services)")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Show what a model will see: a service's features with their fill and distinct values in
    the built tables, and mapped columns no service uses, with the reason."""
    run_list(settings_of(ctx), service, as_json)


def run_list(settings: Settings, service: str | None, as_json: bool = False) -> None:
    import pyarrow.parquet as pq

    from features.offline import OfflineStore
    from features.pipeline import repository
    from features.repo import unused_columns

    repo = repository(settings)
    if service is None:
        services = [
            {
                "service": name, "description": found.description,
                "views": [p.name for p in found.feature_view_projections],
                "features": sum(len(p.features) for p in found.feature_view_projections),
            }
            for name, found in repo.services.items()
        ]  # fmt: skip
        if as_json:
            emit_json(services)
            return
        shown = make_table(
            "feature services (closedloop features list SERVICE for one)",
            "service", "features", "views", "description", keys=("service",),
        )  # fmt: skip
        for s in services:
            shown.add_row(s["service"], str(s["features"]), ", ".join(s["views"]), s["description"])
        console.print(shown)
        return
    if service not in repo.services:
        raise UserError(
            f"unknown feature service {service!r}; choose from {', '.join(repo.services)}"
        )
    views = {view.name: view for view in repo.views}
    features, useless = [], []
    for projection in repo.services[service].feature_view_projections:
        source = Path(views[projection.name].batch_source.path)
        names = [f.name for f in projection.features]
        data = pq.read_table(source, columns=names).to_pandas() if source.is_file() else None
        for feature in projection.features:
            filled = distinct = None
            if data is not None and len(data):
                values = data[feature.name]
                filled, distinct = float(values.notna().mean()), int(values.nunique())
                if distinct < 2:
                    useless.append(feature.name)
            features.append(
                {
                    "feature": feature.name, "view": projection.name, "type": str(feature.dtype),
                    "filled": filled, "distinct": distinct, "description": feature.description,
                }
            )  # fmt: skip
    unused = unused_columns(OfflineStore(settings.home).reports())
    if as_json:
        emit_json(
            {
                "service": service, "features": features, "constant": useless,
                "unused": [{"source": s, "where": c, "why": w} for s, c, w in unused],
            }
        )  # fmt: skip
        return
    shown = make_table(
        f"{service}: what a model trained on it sees",
        "feature", "view", "type", "filled", "distinct", "description",
        keys=("feature",), right=("filled", "distinct"),
    )  # fmt: skip
    for f in features:
        filled = "-" if f["filled"] is None else f"{f['filled']:.0%}"
        distinct = "-" if f["distinct"] is None else f"{f['distinct']:,}"
        shown.add_row(f["feature"], f["view"], f["type"], filled, distinct, f["description"])
    console.print(shown)
    if useless:
        console.print(
            f"[yellow]{len(useless)} features are blank or constant in the built data and "
            f"cannot help a model:[/] {', '.join(useless)}"
        )
    for source, where, why in unused:
        console.print(f"[yellow]not used by any service:[/] {source}: {where}: {why}")


@features_app.command("lookup")
def lookup(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="Feature service: churn_v1 or fault_v1")],
    entity_id: Annotated[str, typer.Argument(help="Customer or cell id")],
    as_json: AsJson = False,
) -> None:
    """Show one entity's online features through a feature service."""
    run_lookup(settings_of(ctx), service, entity_id, as_json=as_json)
