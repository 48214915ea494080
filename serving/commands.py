"""CLI edge of the serving stage: ``closedloop serve``, and the demo's scoring through it."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from closedloop.settings import Settings
from closedloop.terminal import UserError, console, principal_of, settings_of

if TYPE_CHECKING:
    from serving.process import RunningService


def serve(
    ctx: typer.Context,
    port: Annotated[int | None, typer.Option(help="Port (default: CLOSEDLOOP_SERVE_PORT)")] = None,
    clock_start: Annotated[
        datetime | None,
        typer.Option(help="Start the service's clock here, e.g. a simulated world's end"),
    ] = None,
) -> None:
    """Serve churn and fault scores with reasons over HTTP (BentoML) until interrupted."""
    from actions.commands import put_policy_in_force
    from closedloop.access import Permission
    from serving.process import supervise

    settings = _with(settings_of(ctx), port, clock_start)
    put_policy_in_force(settings, lambda: principal_of(ctx, Permission.SET_POLICY))
    console.print(
        f"serving on http://{settings.serve_host}:{settings.serve_port} "
        "(console at /console/, OpenAPI at /docs.json, health at /status/health, metrics at"
        " /metrics)"
    )
    code = supervise(settings)  # SIGTERM, SIGINT: every process it started is stopped
    if code != 0:
        raise UserError(f"the service stopped with exit code {code}")


def serve_until_interrupted(settings: Settings, url: str) -> None:
    """The demo's end: the service on this home until Ctrl-C, its own log in a file."""
    from serving.process import supervise

    log_path = settings.paths.service_log(settings.serve_port)
    console.print(f"serving the ops console at {url} until Ctrl-C (service log: {log_path})")
    code = supervise(settings, log_path)
    if code != 0:
        raise UserError(f"the service stopped with exit code {code}; see {log_path}")


def _with(settings: Settings, port: int | None, clock_start: datetime | None) -> Settings:
    update = {}
    if port is not None:
        update["serve_port"] = port
    if clock_start is not None:
        if clock_start.tzinfo is None:
            raise UserError("--clock-start needs a time zone, e.g. 2026-03-01T00:00:00+00:00")
        update["clock_start"] = clock_start
    return Settings.model_validate({**settings.model_dump(), **update}) if update else settings


def start_demo_service(settings: Settings) -> RunningService:
    """The demo's service, started in the background and ready."""
    from serving.process import start_service

    service = start_service(settings)
    console.print(f"service ready at {service.url} (pid {service.process.pid})")
    return service


def stop_demo_service(settings: Settings, service: RunningService) -> None:
    code = service.stop()
    console.print(
        f"service stopped (exit code {code}); predictions logged under "
        f"{settings.paths.prediction_logs}"
    )


def run_demo_scoring(url: str, customers: list[str], cells: list[str], token: str) -> None:
    """Score through the service at ``url`` over HTTP with the API key ``token`` (an anonymous
    request is refused first) and show the answers."""
    import httpx

    auth = {"Authorization": f"Bearer {token}"}
    anonymous = httpx.post(f"{url}/churn/score", json={"customer_ids": customers})
    answers = [
        httpx.post(f"{url}/churn/score", json={"customer_ids": customers}, headers=auth),
        httpx.post(f"{url}/fault/score", json={"cell_ids": cells}, headers=auth),
    ]
    health = httpx.get(f"{url}/status/health", headers=auth).json()
    console.print(
        f"without a key: {anonymous.status_code} ({anonymous.json()['error']['message']})"
    )
    for answer in answers:
        if answer.status_code != 200:
            console.print(f"[yellow]{answer.json()['error']['message']}[/yellow]")
            continue
        console.print(_score_table(answer.json()))
    console.print(f"health: {health['status']}")


def _score_table(answer: dict) -> Table:
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
            "\n".join(r["text"] for r in score["reasons"]),
        )
    return table
