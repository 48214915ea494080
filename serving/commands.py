"""CLI edge of the serving stage: ``closedloop serve``, and the demo's scoring through it."""

from __future__ import annotations

import subprocess
from datetime import datetime
from typing import Annotated

import typer
from rich.table import Table

from closedloop.settings import Settings
from closedloop.terminal import UserError, console, settings_of


def serve(
    ctx: typer.Context,
    port: Annotated[int | None, typer.Option(help="Port (default: CLOSEDLOOP_SERVE_PORT)")] = None,
    clock_start: Annotated[
        datetime | None,
        typer.Option(help="Start the service's clock here, e.g. a simulated world's end"),
    ] = None,
) -> None:
    """Serve churn and fault scores with reasons over HTTP (BentoML) until interrupted."""
    from serving.process import PROJECT, serve_command, service_environment

    settings = _with(settings_of(ctx), port, clock_start)
    console.print(
        f"serving on http://{settings.serve_host}:{settings.serve_port} "
        "(OpenAPI at /docs.json, health at /status/health, metrics at /metrics)"
    )
    try:
        subprocess.run(
            serve_command(settings), env=service_environment(settings), cwd=PROJECT, check=True
        )
    except KeyboardInterrupt:
        pass
    except subprocess.CalledProcessError as error:
        raise UserError(f"the service stopped with exit code {error.returncode}") from None


def _with(settings: Settings, port: int | None, clock_start: datetime | None) -> Settings:
    update = {}
    if port is not None:
        update["serve_port"] = port
    if clock_start is not None:
        if clock_start.tzinfo is None:
            raise UserError("--clock-start needs a time zone, e.g. 2026-03-01T00:00:00+00:00")
        update["clock_start"] = clock_start
    return Settings.model_validate({**settings.model_dump(), **update}) if update else settings


def run_demo_scoring(settings: Settings, customers: list[str], cells: list[str]) -> None:
    """Start the service, score through it over HTTP, show the answers, stop it."""
    import httpx

    from serving.process import start_service

    service = start_service(settings)
    try:
        churn = httpx.post(
            f"{service.url}/churn/score", json={"customer_ids": customers, "explain": 2}
        ).json()
        fault = httpx.post(f"{service.url}/fault/score", json={"cell_ids": cells}).json()
    finally:
        code = service.stop()
    for answer in (churn, fault):
        table = Table(
            title=f"{answer['model']} v{answer['model_version']} via {answer['feature_service']}"
        )
        for column in ("id", "probability", "stale", "top reasons"):
            table.add_column(column)
        for score in answer["scores"]:
            table.add_row(
                score["entity_id"],
                f"{score['probability']:.3f}",
                str(len(score["stale_features"])),
                "; ".join(r["text"] for r in score["reasons"]),
            )
        console.print(table)
    console.print(f"service stopped (exit code {code}); predictions logged under "
                  f"{settings.home / 'predictions'}")  # fmt: skip
