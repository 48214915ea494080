"""CLI edge of the action layer: policy check, replay, approvals, audit, and the demo stage."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Group, RenderableType
from rich.markdown import Markdown
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from actions.intake import Record
from actions.ledger import LedgerBusyError, Status
from actions.policy import Policy, PolicyError, load_policy
from actions.scoring import NoScores, ScoresFactory, ScoresProvider
from closedloop.access import AccessDeniedError, Permission, Principal, local_admin
from closedloop.alerts import ModelAlert
from closedloop.clock import running_clock
from closedloop.events import EventType, NetworkEvent, Severity
from closedloop.settings import Settings
from closedloop.terminal import (
    AsJson,
    UserError,
    console,
    emit_json,
    make_table,
    principal_of,
    settings_of,
)

if TYPE_CHECKING:
    from actions.backtest import Backtest, Estimates
    from actions.runtime import Runtime
    from actions.views import ActionView
    from closedloop.world.simulate import Truth

REPORT_EVERY = 50  # deliveries between two progress lines of 'actions retry'

policy_app = typer.Typer(
    help="Check, backtest and trace the action policies put in force.", no_args_is_help=True
)
actions_app = typer.Typer(
    help="List, show, approve, reject and retry actions.", no_args_is_help=True
)
audit_app = typer.Typer(help="Query and verify the audit trail.")
events_app = typer.Typer(help="Event records the intake rejected.", no_args_is_help=True)


@policy_app.command("check")
def policy_check(file: Annotated[Path, typer.Argument(help="Policy YAML to lint")]) -> None:
    """Validate a policy; every problem is printed as ``rules[i].field: message``."""
    try:
        policy = load_policy(file)
    except PolicyError as error:
        raise UserError(
            "\n".join(f"{error.source}: {problem}" for problem in error.problems)
        ) from None
    console.print(
        f"{file}: ok — policy {policy.version}, {len(policy.rules)} rules, "
        f"actions: {', '.join(sorted({r.action.type.value for r in policy.rules}))}"
    )


def read_events(path: Path) -> list[NetworkEvent]:
    """Every line of a JSON-lines file the project wrote itself (the world's, the demo's) as an
    event; any bad line is an error naming its line and reason."""
    if not path.is_file():
        raise UserError(f"events file not found: {path}")
    events, problems = [], []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            events.append(NetworkEvent.model_validate_json(line))
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            problems.append(f"line {number}: {where + ': ' if where else ''}{first['msg']}")
    if problems:
        shown = "; ".join(problems[:5]) + (
            f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        )
        raise UserError(f"{path}: {len(problems)} bad event line(s), nothing replayed: {shown}")
    return events


def read_records(path: Path) -> list[Record]:
    """Every non-blank line of a JSON-lines file, as received (validated by the intake)."""
    if not path.is_file():
        raise UserError(f"events file not found: {path}")
    source = str(path.resolve())
    with path.open(encoding="utf-8", errors="replace") as lines:
        return [Record(line, source, n) for n, line in enumerate(lines, 1) if line.strip()]


def clock_of(settings: Settings) -> Callable[[], datetime]:
    """The clock decisions and approvals run on: the wall clock, or the service's clock
    started at ``clock_start``."""
    return running_clock(settings.clock_start)


def _runtime(
    settings: Settings, scores: ScoresProvider, who: Callable[[], Principal] | None = None
) -> Runtime:
    """The runtime of a command, which puts a changed policy in force as ``who``."""
    from actions.runtime import open_runtime

    try:
        return open_runtime(settings, scores, clock_of(settings), who)
    except PolicyError as error:
        raise UserError(f"{error}") from None
    except (FileNotFoundError, ValueError, AccessDeniedError) as error:
        raise UserError(str(error)) from None


def _scores(settings: Settings, open_scores: ScoresFactory) -> ScoresProvider:
    scores, problems = open_scores(settings)
    for problem in problems:
        console.print(f"[yellow]scores: {problem}[/yellow]")
    return scores


def put_policy_in_force(settings: Settings, who: Callable[[], Principal]) -> None:
    """Before a service starts: the settings' policy in force, put there as ``who`` (asked only
    if it changed: an admin); a policy that cannot be read is left to the service to report."""
    from actions.backends import open_ledger
    from actions.policy_record import put_in_force

    try:
        policy = load_policy(settings.action_policy)
    except PolicyError:
        return
    ledger = open_ledger(settings)
    try:
        record = put_in_force(ledger, policy, clock_of(settings)(), who)
    except (PolicyError, AccessDeniedError) as error:
        raise UserError(str(error)) from None
    finally:
        ledger.close()
    console.print(f"action {record.describe()}, in force since {record.in_force_at}")


REPLAY_HOLD = 0.5  # seconds a replay holds the ledger per transaction: others write between
REPLAY_PATIENCE = 120.0  # seconds a replay keeps trying while another process writes


def _counts(results: Counter[str]) -> str:
    return ", ".join(f"{n:,} {s.replace('_', ' ')}" for s, n in results.items())


def deliver(settings: Settings, report_every: int = 0) -> bool:
    """Drain the outbox if the lease is free. While another dispatcher holds it, wait until
    what is queued is delivered or the lease is freed (then drain here), for at most two
    leases; then say who holds it. True if drained here. With ``report_every``, a progress
    line each that many deliveries; an endpoint whose circuit opened is named at the end."""
    import time

    from actions.dispatch import LeaseHeldError, queued
    from actions.ledger import LedgerBusyError
    from actions.runtime import open_dispatcher

    deadline = time.monotonic() + 2 * settings.action_lease_seconds
    told = False

    def progress(results: Counter[str]) -> None:
        if report_every and results.total() % report_every == 0:
            console.print(f"{results.total():,}/{total:,}: {_counts(results)}")

    try:
        with open_dispatcher(settings, clock_of(settings)) as dispatcher:
            while True:
                total = queued(dispatcher.ledger)
                try:
                    results = dispatcher.drain(progress=progress)
                    break
                except LeaseHeldError as held:
                    if not told:
                        console.print(f"{held}; it delivers the {total:,} action(s) waiting")
                        told = True
                    if not total or time.monotonic() > deadline:
                        return False
                    time.sleep(0.5)
            circuits = [c for c in dispatcher.circuits() if c.state != "closed"]
    except ValueError as error:
        raise UserError(str(error)) from None
    except LedgerBusyError as error:
        console.print(
            f"[yellow]{error}; delivery is left to the next dispatcher "
            "('closedloop actions dispatch')[/yellow]"
        )
        return False
    console.print(f"delivered: {_counts(results)}" if results else "nothing to deliver")
    for circuit in circuits:
        console.print(
            f"[yellow]{circuit}: its other deliveries were dead-lettered without a call; "
            "retry them once it answers[/yellow]"
        )
    return True


def replay_command(open_scores: ScoresFactory) -> Callable[..., None]:
    """``closedloop replay``, scoring with what ``open_scores`` opens (composed by the CLI)."""

    def replay(
        ctx: typer.Context,
        file: Annotated[Path, typer.Argument(help="JSON lines of network events")],
        models: Annotated[
            bool, typer.Option(help="Score with the registry's champions (else rules at 0 only)")
        ] = True,
    ) -> None:
        """Replay network events from a file through the action layer; repeats change nothing.
        A line that is not a valid event is recorded as rejected with its reason (see
        'closedloop events rejected') and the others go on; exit 0 when they committed, 2 when
        no line of the file was a valid event. The decisions are committed, then delivered
        here unless another dispatcher holds the ledger's lease."""
        settings = settings_of(ctx)
        by = principal_of(ctx, Permission.POST_EVENTS)
        records = read_records(file)
        scores = _scores(settings, open_scores) if models else NoScores()
        runtime = _runtime(settings, scores, lambda: by)
        try:
            outcomes = runtime.take(records, REPLAY_HOLD, REPLAY_PATIENCE, by=by.label)
        except LedgerBusyError as error:
            raise UserError(
                f"{error} for {REPLAY_PATIENCE:g} s; what committed stays committed: "
                "run the replay again (repeats change nothing)"
            ) from None
        finally:
            runtime.close()
        rejected = [(r, o) for r, o in zip(records, outcomes, strict=True) if o.reason]
        if rejected and len(rejected) == len(records):
            shown = "; ".join(f"line {r.line}: {o.reason}" for r, o in rejected[:5]) + (
                f" (and {len(rejected) - 5} more)" if len(rejected) > 5 else ""
            )
            raise UserError(
                f"{file}: {len(rejected)} bad event line(s), nothing replayed: {shown}"
                " (recorded: closedloop events rejected)"
            )
        print_outcomes([o for o in outcomes if not o.reason])
        if rejected:
            console.print(
                f"[yellow]{len(rejected):,} line(s) rejected, the others committed; "
                "see 'closedloop events rejected'[/yellow]"
            )
        deliver(settings)
        ledger = _open(ctx)
        try:
            print_ledger(ledger)
        finally:
            ledger.close()

    return replay


def consume_command(open_scores: ScoresFactory) -> Callable[..., None]:
    """``closedloop consume``, scoring with what ``open_scores`` opens (composed by the CLI)."""

    def consume(
        ctx: typer.Context,
        consumer: Annotated[
            str | None, typer.Option(help="this consumer's name in the group [default: host:pid]")
        ] = None,
        models: Annotated[
            bool, typer.Option(help="Score with the registry's champions (else rules at 0 only)")
        ] = True,
        batch: Annotated[int, typer.Option(min=1, max=10_000, help="entries per read")] = 200,
    ) -> None:
        """Decide and commit the events POST /events appended to the stream (cluster profile),
        as one consumer of the group; any number may run. Each batch is committed to the ledger,
        then acknowledged. Runs until Ctrl-C or SIGTERM; delivery is the dispatchers' business
        ('closedloop actions dispatch --follow', or the service's)."""
        import os
        import signal
        import socket
        import threading

        from actions.backends import open_stream
        from actions.consumer import Consumer

        settings = settings_of(ctx)
        stream = open_stream(settings)
        if stream is None:
            raise UserError(
                "closedloop consume reads the cluster profile's event stream; on the embedded "
                "profile POST /events decides in the request (use --profile cluster)"
            )
        scores = _scores(settings, open_scores) if models else NoScores()
        name = consumer or f"{socket.gethostname()}:{os.getpid()}"
        who = lambda: principal_of(ctx, Permission.SET_POLICY)  # noqa: E731 - asked on a change
        worker = Consumer(
            stream, lambda: _runtime(settings, scores, who), name, settings.stream_max_deliveries,
            batch,
        )  # fmt: skip
        worker.runtime  # noqa: B018 - a bad policy or missing customers: one red line, now
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        console.print(f"consumer {name} of group {settings.stream_group} on {stream.name}")
        try:
            counts = worker.run(stop)
        except KeyboardInterrupt:
            counts = worker.counts
        finally:
            worker.close()
            stream.close()
        shown = ", ".join(f"{n:,} {k.replace('_', ' ')}" for k, n in sorted(counts.items()))
        console.print(f"stopped: {shown or 'nothing consumed'}")

    return consume


@events_app.command("dead")
def events_dead(
    ctx: typer.Context,
    as_json: AsJson = False,
    limit: Annotated[int, typer.Option(help="rows at most")] = 200,
) -> None:
    """Stream entries no consumer could commit within the allowed deliveries (cluster
    profile), each with its last error, oldest first."""
    from actions.backends import open_stream
    from actions.streams import IntakeUnavailableError, dead_letter_summary

    stream = open_stream(settings_of(ctx))
    if stream is None:
        raise UserError("dead letters exist on the cluster profile's event stream only")
    try:
        rows = [dead_letter_summary(row) for row in stream.dead_letters(limit)]
    except IntakeUnavailableError as error:
        raise UserError(str(error)) from None
    finally:
        stream.close()
    if as_json:
        emit_json(rows)
        return
    shown = make_table(
        f"dead letters of {stream.name}: {len(rows):,} (first {limit:,})",
        "at", "entry", "event id", "deliveries", "consumer", "error",
        keys=("entry", "event id"),
    )  # fmt: skip
    for row in rows:
        shown.add_row(
            row["at"][:19], row["entry_id"], row["event_id"] or "", row["deliveries"],
            row["consumer"], row["error"],
        )  # fmt: skip
    console.print(shown)


@events_app.command("rejected")
def events_rejected(
    ctx: typer.Context,
    as_json: AsJson = False,
    limit: Annotated[int, typer.Option(help="rows at most")] = 200,
) -> None:
    """Event records the intake refused (a replayed line, an item of POST /events), each with
    its reason, where it came from and when."""
    ledger = _open(ctx)
    try:
        rows = ledger.rejected_events(limit)
    finally:
        ledger.close()
    if as_json:
        emit_json(rows)
        return
    shown = make_table(
        f"rejected events: {len(rows):,} (first {limit:,})",
        "received at", "source", "line", "event id", "reason", "record", keys=("event id",),
    )  # fmt: skip
    for row in rows:
        shown.add_row(
            row["received_at"][:19], row["source"], str(row["line"] or ""),
            row["event_id"] or "", row["reason"], row["raw"][:120],
        )  # fmt: skip
    console.print(shown)


@actions_app.command("dispatch")
def actions_dispatch(
    ctx: typer.Context,
    follow: Annotated[
        bool, typer.Option(help="keep delivering (or waiting for the lease) until stopped")
    ] = False,
) -> None:
    """Deliver what the ledger holds as pending, if no other dispatcher holds its lease."""
    principal_of(ctx, Permission.DISPATCH)
    if not follow:
        deliver(settings_of(ctx))
        return
    import threading

    from actions.runtime import open_dispatcher

    settings = settings_of(ctx)
    stop = threading.Event()
    console.print("delivering while holding the ledger's lease; Ctrl-C stops")
    try:
        with open_dispatcher(settings, clock_of(settings)) as dispatcher:
            dispatcher.follow(stop, threading.Event())
    except KeyboardInterrupt:
        stop.set()
    except ValueError as error:
        raise UserError(str(error)) from None


def print_outcomes(outcomes: list) -> None:
    kinds = Counter(o.outcome for o in outcomes)
    statuses = Counter(s for o in outcomes for s in o.statuses().elements())
    console.print(
        f"{len(outcomes)} events: "
        + ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in sorted(kinds.items()))
        + f"; {sum(statuses.values())} new decisions ("
        + ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in sorted(statuses.items()))
        + ")"
    )


def print_ledger(ledger) -> None:
    counts = ledger.counts()
    statuses = sorted({s for _, s in counts})
    table = Table(title="actions in the ledger, by type and status")
    table.add_column("action")
    for status in statuses:
        table.add_column(status.replace("_", " "), justify="right")
    for action in sorted({a for a, _ in counts}):
        table.add_row(action, *(f"{counts.get((action, s), 0):,}" for s in statuses))
    console.print(table)
    guards = ledger.suppressed_by_guard()
    by_guard = Table(title=f"suppressed by guard: {sum(guards.values()):,}")
    by_guard.add_column("guard")
    by_guard.add_column("decisions", justify="right")
    for guard, n in sorted(guards.items(), key=lambda item: -item[1]):
        by_guard.add_row(guard, f"{n:,}")
    console.print(by_guard)
    waiting = ledger.decisions(status=Status.AWAITING_APPROVAL, limit=10)
    total = counts_of(counts, Status.AWAITING_APPROVAL)
    console.print(_decision_table(f"waiting for approval: {total:,} (first 10)", waiting))


def counts_of(counts: dict[tuple[str, str], int], status: str) -> int:
    return sum(n for (_, s), n in counts.items() if s == status)


WIDE = 120  # columns from which decisions print as a table, below as two lines each


def _decision_table(title: str, rows: list[dict[str, Any]]) -> RenderableType:
    """Decisions as a table on a wide terminal; on a narrow one two lines each (the key first,
    whole), so that no column is squeezed into slivers."""
    if console.width < WIDE:
        lines = [Text(title, style="bold")]
        for row in rows:
            lines.append(Text(f"{row['key']}  {_words(row['action'])} → {row['target']}"))
            lines.append(Padding(Text(", ".join(_facts(row)), style="dim"), (0, 0, 0, 2)))
        return Group(*lines)
    shown = make_table(
        title, "key", "action", "target", "priority", "value at risk", "cost", "gain", "status",
        "why", keys=("key", "target"), right=("priority", "value at risk", "cost", "gain"),
    )  # fmt: skip
    for row in rows:
        why = (row["guard"] and f"{row['guard']}: {row['reason']}") or row["reason"] or ""
        cost, gain = row.get("cost"), row.get("expected_gain")
        shown.add_row(
            row["key"], _words(row["action"]), row["target"], str(row["priority"]),
            f"{row['value_at_risk']:,.0f}", "-" if cost is None else f"{cost:,.2f}",
            "-" if gain is None else f"{gain:,.2f}", _words(row["status"]), why,
        )  # fmt: skip
    return shown


def _facts(row: dict[str, Any]) -> list[str]:
    why = (row["guard"] and f"{row['guard']}: {row['reason']}") or row["reason"]
    facts = [_words(row["status"]), f"priority {row['priority']}",
             f"value at risk {row['value_at_risk']:,.0f}"]  # fmt: skip
    if row.get("cost") is not None:
        facts.append(f"cost {row['cost']:,.2f}")
    if row.get("expected_gain") is not None:
        facts.append(f"gain {row['expected_gain']:,.2f}")
    return [*facts, why] if why else facts


def _words(name: str) -> str:
    """A name as a table shows it, so that a narrow column wraps it between words."""
    return name.replace("_", " ")


def _open(ctx: typer.Context):
    from actions.anchor import AnchorError
    from actions.backends import open_ledger

    try:
        return open_ledger(settings_of(ctx))
    except AnchorError as error:
        raise UserError(str(error)) from None


@policy_app.command("history")
def policy_history(ctx: typer.Context, as_json: AsJson = False) -> None:
    """Every action policy put in force on this ledger: its number, version, content digest,
    since when and by whom (the last one is in force). Each decision names its version."""
    from actions.policy_record import history

    ledger = _open(ctx)
    try:
        rows = history(ledger)
    finally:
        ledger.close()
    if as_json:
        emit_json(rows)
        return
    if not rows:
        console.print("no policy put in force on this ledger yet: serve, replay or consume does")
        return
    table = make_table(
        f"policies put in force: {len(rows):,}", "#", "version", "sha256", "in force since", "by",
        keys=("version", "sha256"),
    )  # fmt: skip
    for row in rows:
        table.add_row(
            str(row.number), row.version, row.digest[:12], row.in_force_at[:19], row.put_by or "-"
        )
    console.print(table)


@actions_app.command("list")
def actions_list(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(help="e.g. awaiting_approval, dead_letter")] = None,
    action: Annotated[str | None, typer.Option(help="action type")] = None,
    limit: Annotated[int, typer.Option(help="rows at most")] = 50,
    as_json: AsJson = False,
) -> None:
    """List decisions (expired approvals are marked expired first)."""
    from actions.approvals import expire

    ledger = _open(ctx)
    try:
        expire(ledger, clock_of(settings_of(ctx))())
        rows = ledger.decisions(status, action, limit)
    finally:
        ledger.close()
    if as_json:
        emit_json(rows)
        return
    console.print(_decision_table("decisions", rows))


@actions_app.command("outcomes")
def actions_outcomes(
    ctx: typer.Context,
    horizon_days: Annotated[int, typer.Option(help="follow each customer this long", min=1)] = 30,
    as_of: Annotated[
        datetime | None, typer.Option(help="outcomes known up to here [default: the clock]")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Realised effect of each customer action: the share of customers leaving within the
    horizon, treated (dispatched) against the policy's held-out control group, 95 % interval."""
    import pandas as pd

    from actions.ledger import sql_list
    from actions.outcomes import followed, realised_effects
    from actions.policy import CONTACT_ACTIONS
    from features.canonical import CHURN_LABELS
    from features.offline import OfflineStore

    settings = settings_of(ctx)
    ledger = _open(ctx)
    try:
        decisions = pd.DataFrame(
            ledger.read().rows(
                "SELECT key, action, customer_id, status, decided_at FROM decisions"
                f" WHERE customer_id IS NOT NULL AND action IN ({sql_list(CONTACT_ACTIONS)})"
                f" AND status IN ('{Status.DISPATCHED}', '{Status.HELD_OUT}')"
            ),
            columns=["key", "action", "customer_id", "status", "decided_at"],
        )
    finally:
        ledger.close()
    labels = OfflineStore(settings.home).read(CHURN_LABELS.name)
    until = (as_of or clock_of(settings)()).date()
    outcomes = followed(decisions, labels, horizon_days, until)
    effects = realised_effects(outcomes, Status.DISPATCHED, Status.HELD_OUT)
    if as_json:
        emit_json({"horizon_days": horizon_days, "as_of": until, "effects": effects})
        return
    table = make_table(
        f"customers leaving within {horizon_days} days of the action, known by {until}",
        "action", "treated", "left", "held out", "left ", "effect", "95 % interval",
        right=("treated", "left", "held out", "left ", "effect", "95 % interval"),
    )  # fmt: skip
    for e in effects:
        shown = "-" if e.effect is None else f"{e.effect:+.1%}"
        interval = "-" if e.low is None else f"{e.low:+.1%} .. {e.high:+.1%}"
        table.add_row(
            e.action, f"{e.treated:,}", f"{e.treated_left:,}", f"{e.held_out:,}",
            f"{e.held_out_left:,}", shown, interval,
        )  # fmt: skip
    if not effects:
        console.print("no delivered or held-out customer action has reached its horizon yet")
        return
    console.print(table)
    console.print("effect: the held-out group's share leaving less the treated group's")


@actions_app.command("show")
def actions_show(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="the action's key")],
    as_json: AsJson = False,
) -> None:
    """One action with all the console shows of it: its score and reasons, value, guards, the
    triggering event, the other actions of its incident, its audit trail and its runbook."""
    from actions.approvals import expire
    from actions.views import action_view

    ledger = _open(ctx)
    try:
        expire(ledger, clock_of(settings_of(ctx))())
        view = action_view(ledger, key)
    finally:
        ledger.close()
    if view is None:
        raise UserError(f"no action {key!r}; 'closedloop actions list' shows the keys")
    if as_json:
        emit_json(view)
        return
    print_action(view)


def print_action(view: ActionView) -> None:
    """One action as a person reads it, top to bottom: what, why, what stopped it, where from."""
    d = view.decision
    console.print(f"[bold]{d['action']}[/] on {d['target']}: [bold]{d['status']}[/]")
    console.print(d["key"], soft_wrap=True)
    facts = make_table(None, "what", "value")  # ids fit the value column at 80; prose wraps
    shown = {
        "incident": d["incident"], "cell": d["cell_id"], "customer": d["customer_id"],
        "rule": f"{d['rule_id']} (policy {d['policy_version']})", "priority": d["priority"],
        "value at risk": f"{d['value_at_risk']:,.2f}",
        "amount": None if d["amount"] is None else f"{d['amount']:,.2f}",
        "impact": f"{d['impact']:,.2f}", "decided at": d["decided_at"],
        "expires at": d["expires_at"], "requested by": d["requested_by"],
        "decided by": d.get("decided_by"), "why": d["reason"],
    }  # fmt: skip
    for name, value in shown.items():
        if value is not None:
            facts.add_row(name, str(value))
    if view.score is not None:
        s = view.score
        facts.add_row("score", f"{s.model} v{s.model_version}: p={s.probability:.3f}")
        for reason in s.reasons:
            facts.add_row("reason", reason)
        if s.stale_features:
            facts.add_row("stale features", ", ".join(s.stale_features))
    if view.event is not None:
        e = view.event
        facts.add_row("event", f"{e['event_id']}: {e['event_type']} {e['severity']}")
        facts.add_row("occurred at", str(e["occurred_at"]))
    console.print(facts)
    guards = make_table("guards", "guard", "passed", "reason")
    for name, passed, reason in view.guards:
        guards.add_row(name, "yes" if passed else "[red]no[/]", reason)
    console.print(guards)
    if view.incident:
        others = make_table(
            f"same incident: {len(view.incident):,} other action(s)",
            "key", "action", "target", "status", keys=("key", "target"),
        )  # fmt: skip
        for row in view.incident:
            status = _words(row["status"]) + (f" ({row['guard']})" if row["guard"] else "")
            others.add_row(row["key"], _words(row["action"]), row["target"], status)
        console.print(others)
    console.print(_trail_table(f"audit trail: {len(view.trail)} row(s)", view.trail))
    console.print(Markdown(view.runbook))


def _settle(ctx: typer.Context, key: str, approve: bool, note: str) -> None:
    from actions.approvals import ApprovalError, settle
    from actions.policy_record import policy_in_force

    settings = settings_of(ctx)
    by = principal_of(ctx, Permission.SETTLE)
    ledger = _open(ctx)
    try:
        policy = policy_in_force(ledger) or load_policy(settings.action_policy)
        limit = policy.exception_above  # the policy in force's, not the approver's settings'
        status = settle(ledger, key, approve, by, note, clock_of(settings)(), limit)
    except (ApprovalError, PolicyError) as error:
        raise UserError(str(error)) from None
    finally:
        ledger.close()
    console.print(f"{key}: {status} by {by.label}")
    if approve:
        deliver(settings)
        _print_statuses(ctx, [key])


@actions_app.command("approve")
def actions_approve(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument()],
    note: Annotated[str, typer.Option(help="why")] = "",
) -> None:
    """Approve a waiting action as your key's principal (operator up to the policy's exception
    limit, approver above; not an action you requested); it is dispatched at once. Expired ones
    cannot be approved."""
    _settle(ctx, key, True, note)


@actions_app.command("reject")
def actions_reject(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument()],
    note: Annotated[str, typer.Option(help="why")] = "",
) -> None:
    """Reject a waiting action as your key's principal; it is never executed."""
    _settle(ctx, key, False, note)


@actions_app.command("retry")
def actions_retry(
    ctx: typer.Context,
    key: Annotated[str | None, typer.Argument(help="a dead-lettered decision or update")] = None,
    every: Annotated[bool, typer.Option("--all", help="every dead letter")] = False,
    note: Annotated[str, typer.Option(help="why")] = "",
) -> None:
    """Move dead letters back to pending and dispatch them again, with a progress line every
    50 deliveries. An endpoint that keeps failing opens its circuit: its remaining actions
    are dead-lettered again at once, with the reason, rather than each waiting its timeout."""
    from actions.approvals import ApprovalError, retry

    if (key is None) == (not every):
        raise UserError("give a KEY or --all")
    settings = settings_of(ctx)
    by = principal_of(ctx, Permission.SETTLE)
    ledger = _open(ctx)
    try:
        keys = retry(ledger, key, by, note, clock_of(settings)())
    except ApprovalError as error:
        raise UserError(str(error)) from None
    finally:
        ledger.close()
    console.print(f"{len(keys)} dead letter(s) back to pending by {by.label}")
    deliver(settings, report_every=REPORT_EVERY)
    _print_statuses(ctx, keys)


def _print_statuses(ctx: typer.Context, keys: list[str]) -> None:
    ledger = _open(ctx)
    try:
        for key in keys:
            console.print(f"{key}: {ledger.delivery_status(key) or 'unknown'}")
    finally:
        ledger.close()


@audit_app.callback(invoke_without_command=True)
def audit_query(
    ctx: typer.Context,
    customer: Annotated[str | None, typer.Option(help="customer id")] = None,
    cell: Annotated[str | None, typer.Option(help="cell id")] = None,
    action: Annotated[str | None, typer.Option(help="action key or action type")] = None,
    limit: Annotated[int, typer.Option(help="rows at most")] = 200,
    as_json: AsJson = False,
) -> None:
    """The trail about a customer, a cell or an action: event → scores → rule → guards →
    decision → approval → dispatch."""
    if ctx.invoked_subcommand is not None:
        return
    from actions import audit

    if not (customer or cell or action):
        raise UserError("give --customer, --cell or --action (or run 'audit verify')")
    ledger = _open(ctx)
    try:
        rows = audit.query(ledger, customer, cell, action, limit)
    finally:
        ledger.close()
    if as_json:
        emit_json([{**row, "payload": json.loads(row["payload"])} for row in rows])
        return
    console.print(_trail_table(f"audit trail: {len(rows)} row(s)", rows))


def _trail_table(title: str, rows: list[dict[str, Any]]) -> Table:
    shown = make_table(title, "seq", "at", "kind", "action", "key", "what", keys=("key",))
    for row in rows:
        shown.add_row(
            str(row["seq"]), row["at"][:19], row["kind"], row["action"] or "", row["key"] or "",
            _what(row["kind"], json.loads(row["payload"])),
        )  # fmt: skip
    return shown


def _value(decision: dict[str, Any]) -> str:
    """``, cost 0.50, gain 12.30 (uplift v2)``: what a decision's audit row says it is worth."""
    text = "" if decision.get("cost") is None else f", cost {decision['cost']:,.2f}"
    if decision.get("expected_gain") is not None:
        text += f", gain {decision['expected_gain']:,.2f}"
        if decision.get("uplift_version"):
            text += f" (uplift v{decision['uplift_version']})"
    return text


def _what(kind: str, payload: dict[str, Any]) -> str:
    if kind == "event":
        event = payload["event"]
        return f"{event['event_type']} {event['severity']} → {payload['outcome']}"
    if kind == "decision":
        score = payload["score"] or {}
        failed = [f"{g}: {reason}" for g, passed, reason in payload["guards"] if not passed]
        return (
            f"rule {payload['rule']} (policy {payload['policy_version']}), "
            f"{score.get('model', 'no')} model v{score.get('model_version', '-')} "
            f"p={score.get('probability', 0):.2f}{_value(payload['decision'])} → "
            f"{payload['status']}" + (f" [{'; '.join(failed)}]" if failed else "")
        )
    if kind == "dispatch":
        return f"{payload['status']} after {payload['attempts']} attempt(s) {payload['error']}"
    if kind == "approval":
        return f"{payload['verdict']} by {payload['by']}: {payload['note']}"
    if kind == "retry":
        return f"retried by {payload['by']}: {payload['note']} (after {payload['last_error']})"
    if kind == "key":
        named = f"{payload['key_id']} ({payload['name']}, {payload['role']})"
        return f"key {named} {payload['verb']} by {payload['by']}"
    if kind in ("promotion", "training"):
        return f"{payload['model']} v{payload['version']} {kind} by {payload['by']}"
    return json.dumps(payload)[:120]


@audit_app.command("verify")
def audit_verify(ctx: typer.Context) -> None:
    """Check the audit trail: each row's MAC and link from the first, that it reaches its head
    checkpoint, and every decision against its audit row; exit 1 saying what does not hold."""
    from actions import audit

    ledger = _open(ctx)
    try:
        verdict = audit.verify(ledger)
    finally:
        ledger.close()
    if not verdict.intact:
        where = f" at row {verdict.broken_at}" if verdict.broken_at is not None else ""
        console.print(
            f"[red]audit trail broken{where}: {verdict.problem}[/red] "
            f"({verdict.rows:,} chained rows hold)"
        )
        raise typer.Exit(1)
    console.print(
        f"audit trail intact: {verdict.rows:,} rows, up to its head checkpoint; every decision "
        "matches its audit row"
    )


DEMO_DAY = timedelta(days=2)  # the world's events the demo replays: its last two days


def demo_events(settings: Settings, end: datetime, cells: list[str]) -> Path:
    """The world's last days of events, then a major outage: a power failure on the first of
    ``cells`` (two alarms, a flapping repeat, then the clears) and a backhaul cut across the
    others still open at ``end`` (so their approvals wait), and a re-sent copy of the first
    events: what stage 6 replays."""
    world_events = settings.world_dir / "events" / "network_events.jsonl"
    recent = [event for event in read_events(world_events) if event.occurred_at >= end - DEMO_DAY]
    onset = end - timedelta(hours=2)
    first, *others = cells

    def alarm(n: int, kind: EventType, cell: str, alarm_id: str, minutes: float) -> NetworkEvent:
        what = "site power failure" if cell == first else "backhaul cut"
        return NetworkEvent(
            event_id=f"demo-{n}", event_type=kind, occurred_at=onset + timedelta(minutes=minutes),
            cell_id=cell, severity=Severity.CRITICAL, alarm_id=alarm_id,
            description=what,
        )  # fmt: skip

    outage = [
        alarm(1, EventType.ALARM_ONSET, first, "demo-power", 0),
        alarm(2, EventType.ALARM_ONSET, first, "demo-power", 3),  # flapping: same alarm again
        alarm(3, EventType.ALARM_ONSET, first, "demo-power-2", 4),  # same outage, another alarm
        alarm(4, EventType.ALARM_CLEAR, first, "demo-power", 50),
        alarm(5, EventType.ALARM_CLEAR, first, "demo-power-2", 55),
        *(
            alarm(6 + n, EventType.ALARM_ONSET, cell, f"demo-backhaul-{n}", 20 + n)
            for n, cell in enumerate(others)
        ),
    ]
    events = sorted([*recent, *outage], key=lambda e: e.occurred_at)
    path = settings.paths.demo_events
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(e.model_dump_json() + "\n" for e in [*events, *events[:50]]))
    return path


def run_demo_actions(
    settings: Settings, end: datetime, cells: list[str], open_scores: ScoresFactory
) -> None:
    """Stage 6: replay the demo events, print what was decided, replay again: nothing new."""
    path = demo_events(settings, end, cells)
    events = read_events(path)
    console.print(f"replaying {len(events):,} events from {path} (an outage on {', '.join(cells)})")
    runtime = _runtime(settings, _scores(settings, open_scores))
    try:
        print_outcomes(runtime.handle(events, local_admin().label))
        deliver(settings)
        print_ledger(runtime.ledger)
        again = runtime.handle(events, local_admin().label)
        new = sum(len(o.decisions) for o in again)
        console.print(f"replayed the same file again: {new} new decisions (idempotent)")
        from actions import audit

        verdict = audit.verify(runtime.ledger)
        console.print(
            f"audit trail: {verdict.rows:,} rows, "
            f"{'intact' if verdict.intact else 'BROKEN: ' + verdict.problem}; "
            f"outbox under {settings.paths.outbox}"
        )
    finally:
        runtime.close()


DEMO_CONSUMER = "demo"
POST_BATCH = 500  # events per POST /events of the demo


def run_demo_stream(
    settings: Settings,
    url: str,
    token: str,
    end: datetime,
    cells: list[str],
    open_scores: ScoresFactory,
) -> None:
    """Stage 6 where events come in through a stream (cluster): post the demo events to the
    service at ``url``, which appends them; decide and commit them as one consumer of the
    group; deliver; post them again: nothing new."""
    from actions import audit
    from actions.backends import open_ledger, open_stream
    from actions.consumer import Consumer

    path = demo_events(settings, end, cells)
    events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    stream = open_stream(settings)
    if stream is None:
        raise UserError(f"the {settings.profile.value} profile has no event stream")
    scores = _scores(settings, open_scores)
    consumer = Consumer(
        stream, lambda: _runtime(settings, scores), DEMO_CONSUMER, settings.stream_max_deliveries
    )
    ledger = open_ledger(settings)
    try:
        console.print(
            f"posting {len(events):,} events from {path} to {url}/events (an outage on "
            f"{', '.join(cells)}); consumer {DEMO_CONSUMER} of group {settings.stream_group} "
            f"decides them"
        )
        decided = _post_and_consume(url, token, events, consumer, ledger)
        deliver(settings)
        print_ledger(ledger)
        again = _post_and_consume(url, token, events, consumer, ledger)
        console.print(f"posted the same events again: {again} new decisions (idempotent)")
        verdict = audit.verify(ledger)
        console.print(
            f"audit trail: {verdict.rows:,} rows, "
            f"{'intact' if verdict.intact else 'BROKEN: ' + verdict.problem}; "
            f"outbox under {settings.paths.outbox}"
        )
        if not decided:
            raise UserError("the demo's events made no decision")
    finally:
        ledger.close()
        consumer.close()
        stream.close()


def _post_and_consume(url: str, token: str, events: list[dict], consumer, ledger) -> int:
    """POST ``events`` to the service in batches, then let ``consumer`` settle every entry;
    prints what each step did and returns the decisions the ledger gained."""
    import httpx

    before = sum(ledger.counts().values())
    queued: Counter[str] = Counter()
    for start in range(0, len(events), POST_BATCH):
        answer = httpx.post(
            f"{url}/events",
            json={"events": events[start : start + POST_BATCH]},
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )
        if answer.status_code not in (202, 207):
            raise UserError(f"POST /events answered {answer.status_code}: {answer.text[:300]}")
        queued.update(o["outcome"] for o in answer.json()["outcomes"])
    consumed = consumer.counts.copy()
    while consumer.step():  # every entry appended above: read, committed and acknowledged
        pass
    settled = consumer.counts - consumed
    new = sum(ledger.counts().values()) - before
    console.print(
        f"POST /events: {_counts(queued)}; consumed {settled.total():,} entries: "
        f"{_counts(settled)}; {new:,} new decisions"
    )
    return new


def print_loop_summary(settings: Settings) -> None:
    """The closing summary of what the loop did, read from the ledger."""
    from actions.backends import open_ledger
    from actions.views import loop_summary

    ledger = open_ledger(settings)
    try:
        summary = loop_summary(ledger)
    finally:
        ledger.close()
    table = make_table("the loop, from the ledger", "what", "count", right=["count"])
    table.add_row("events (each once)", f"{sum(summary.events.values()):,}")
    for outcome, n in sorted(summary.events.items()):
        table.add_row(f"  {outcome.replace('_', ' ')}", f"{n:,}")
    table.add_row("actions", f"{sum(summary.actions.values()):,}")
    for action, n in sorted(summary.actions.items()):
        table.add_row(f"  {action}", f"{n:,}")
    table.add_row("suppressed by guard", f"{sum(summary.suppressed.values()):,}")
    for guard, n in sorted(summary.suppressed.items(), key=lambda item: -item[1]):
        table.add_row(f"  {guard}", f"{n:,}")
    table.add_row("held out (control group)", f"{summary.held_out:,}")
    table.add_row("waiting for approval", f"{summary.waiting:,}")
    console.print(table)
    console.print(
        f"value at risk addressed: {summary.addressed_value:,.2f} USD over the "
        f"{summary.reached:,} customers an action reached (sent or queued); "
        f"{summary.waiting_value:,.2f} USD more waits for approval"
    )


EstimatesFactory = Callable[[Settings, "Truth", int], "tuple[Estimates, str]"]
"""Opens the models a backtest ranks by: (estimates at the window's start, where they came from)."""


def backtest_command(estimates_of: EstimatesFactory) -> Callable[..., None]:
    """``policy backtest``, with the CLI's way of getting churn scores and uplift estimates."""

    def backtest(
        ctx: typer.Context,
        file: Annotated[Path, typer.Argument(help="Policy YAML to replay")],
        window: Annotated[
            str, typer.Option(help="Days replayed, START..END (YYYY-MM-DD..YYYY-MM-DD)")
        ],
        budget: Annotated[
            float | None,
            typer.Option(help="USD every row may spend [default: what the policy spends]"),
        ] = None,
        as_json: AsJson = False,
    ) -> None:
        """Replay a window of this home's world under the policy and its baselines, each at the
        same budget, counted against the world's ground truth (exact counterfactuals)."""
        try:
            policy = load_policy(file)
        except PolicyError as error:
            raise UserError(f"{error.source}: {'; '.join(error.problems)}") from None
        result, source = run_backtest(settings_of(ctx), policy, window, budget, estimates_of)
        if as_json:
            emit_json({**result.model_dump(), "models": source})
            return
        print_backtest(result, source)

    return backtest


def run_backtest(
    settings: Settings,
    policy: Policy,
    window: str,
    budget: float | None,
    estimates_of: EstimatesFactory,
) -> tuple[Backtest, str]:
    """(the backtest of ``policy`` over ``window`` of this home's world, where its estimates came
    from); a window or world that does not fit is a user error."""
    from actions.backtest import BacktestError, Window
    from actions.backtest import backtest as run
    from closedloop.world.simulate import simulate_truth
    from closedloop.world.store import read_config

    try:
        config = read_config(settings.world_dir)
        days = Window.parse(window, config.start, config.days)
    except (FileNotFoundError, BacktestError) as error:
        raise UserError(str(error)) from None
    truth = simulate_truth(config)
    try:
        estimates, source = estimates_of(settings, truth, days.start)
        return run(truth, policy, days, estimates, budget), source
    except (BacktestError, ValueError) as error:
        raise UserError(str(error)) from None


def print_backtest(result: Backtest, source: str) -> None:
    columns = (
        ("policy", "policy"),
        ("churn prevented", "churn_prevented"),
        ("revenue retained", "revenue_retained"),
        ("cost", "cost"),
        ("net value", "net_value"),
        ("expected net value", "expected_net_value"),
        ("budget used", "budget_used"),
        ("contacted", "contacted"),
        ("treated", "treated"),
        ("harmed", "harmed"),
    )
    titles = [title for title, _ in columns]
    table = make_table(
        f"backtest {result.window}: {result.customers} customers, "
        f"{result.untreated_churn} leave untreated, budget {result.budget:,.2f} USD",
        *titles,
        right=titles[1:],
    )  # figures fold at a narrow terminal rather than end in '…'
    table.caption = f"models: {source}"
    _add_rows(table, result.rows, [key for _, key in columns])
    console.print(table)
    if result.upsell:
        upsell = (
            ("policy", "policy"),
            ("revenue gained", "revenue_retained"),
            ("cost", "cost"),
            ("net value", "net_value"),
            ("expected net value", "expected_net_value"),
            ("offers", "contacted"),
        )
        titles = [title for title, _ in upsell]
        table = make_table(
            "upgrade offers at the window's usage spikes (MRR gained × value months)",
            *titles,
            right=titles[1:],
        )
        _add_rows(table, result.upsell, [key for _, key in upsell])
        console.print(table)


def _add_rows(table, rows, keys: list[str]) -> None:
    for row in rows:
        values = row.model_dump()
        table.add_row(
            *(
                f"{values[key]:,.2f}"
                if isinstance(values[key], float) and key != "budget_used"
                else f"{values[key]:.0%}"
                if key == "budget_used"
                else str(values[key])
                for key in keys
            )
        )


def record_change(
    settings: Settings, kind: str, by: Principal, payload: dict[str, Any], key: str
) -> None:
    """One state change made outside the ledger (a training run, a promotion) in the audit
    trail, with its principal."""
    from datetime import UTC

    from actions import audit
    from actions.audit import Entry
    from actions.backends import open_ledger

    ledger = open_ledger(settings)
    try:
        with ledger.write() as tx:
            entry = Entry(kind, datetime.now(UTC), {**payload, "by": by.label}, key=key)
            audit.append(tx, [entry])
    finally:
        ledger.close()


def tell_owner(settings: Settings, alert: ModelAlert, by: Principal) -> None:
    """Open the owner's ticket for a monitoring run's ``alert`` (once per run) and deliver it."""
    from actions.backends import open_ledger
    from actions.model_alerts import open_alert

    try:
        policy = load_policy(settings.action_policy)
    except PolicyError as error:
        raise UserError(str(error)) from None
    from actions.policy_record import put_in_force

    now = clock_of(settings)()
    ledger = open_ledger(settings)
    try:
        put_in_force(ledger, policy, now, lambda: by)
        key, new = open_alert(ledger, policy, alert, now, by.label)
    except (PolicyError, AccessDeniedError) as error:
        raise UserError(str(error)) from None
    finally:
        ledger.close()
    if key is None:
        console.print(f"{alert.headline}: the policy opens no ticket for '{alert.kind}'")
        return
    state = "opened" if new else "was opened before"
    console.print(f"ticket {key} for {alert.owner} {state}: {alert.headline}")
    deliver(settings)
