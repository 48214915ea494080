"""The action layer's backends, chosen by the profile: each factory builds one and describes it.

- event intake (:func:`intake_backend`, :func:`open_stream`): ``closedloop replay FILE`` decides
  and commits each event in the command on both profiles; the service's ``POST /events`` does
  so in the request (embedded) or appends to a Redis stream that ``closedloop consume``
  processes in a consumer group (cluster);
- the ledger and audit trail (:func:`open_ledger`, :func:`ledger_backend`): SQLite in WAL mode
  under the home (embedded) or a schema of PostgreSQL (cluster), one DDL for both;
- dispatch (:func:`dispatch_backend`): any number of dispatchers, of which the one holding the
  ledger's lease delivers, to HTTP endpoints or the local outbox under the home.

Nothing here opens a database, so describing the backends stays quick.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from actions.anchor import Anchor
from actions.ledger import Ledger
from closedloop.backends import Backend, Concern, redis_address
from closedloop.settings import Profile, Settings, redacted

if TYPE_CHECKING:
    from actions.streams import EventStream


def intake_backend(settings: Settings) -> Backend:
    """Where network events come in, and where they are decided."""
    if settings.profile is Profile.CLUSTER:
        redis = redis_address(settings.redis_url.get_secret_value())
        where = (
            f"{settings.stream_key} on {redis}, group "
            f"{settings.stream_group}: POST /events appends, closedloop consume decides and "
            f"commits, then acknowledges (taken over after {settings.stream_claim_idle_seconds:g}"
            f" s idle, dead-lettered to {settings.stream_key}:dead after "
            f"{settings.stream_max_deliveries} deliveries); closedloop replay FILE decides in the"
            " command"
        )
        return Backend(Concern.EVENT_INTAKE, "redis stream", where)
    where = (
        "(POST /events, closedloop replay FILE): each event decided and committed in the request"
    )
    return Backend(Concern.EVENT_INTAKE, "http and file replay", where)


def open_stream(settings: Settings) -> EventStream | None:
    """The profile's event stream (cluster), None where events are decided in the request."""
    if settings.profile is not Profile.CLUSTER:
        return None
    from actions.streams import RedisStream

    return RedisStream(
        settings.redis_url.get_secret_value(),
        settings.stream_key,
        settings.stream_group,
        settings.stream_claim_idle_seconds,
    )


def ledger_backend(settings: Settings) -> Backend:
    key = "CLOSEDLOOP_AUDIT_KEY" if settings.audit_key is not None else settings.paths.audit_key
    audit = (
        f"; audit trail keyed by {key}, head checkpoint {settings.paths.audit_head}, witness "
        f"{settings.witness}"
    )
    if settings.profile is Profile.CLUSTER:
        where = (
            f"{redacted(settings.postgres_dsn.get_secret_value())} schema {settings.ledger_schema}"
        )
        return Backend(Concern.LEDGER, "postgresql", where + audit)
    return Backend(Concern.LEDGER, "sqlite", str(settings.paths.ledger_db) + audit)


def audit_anchor(settings: Settings) -> Anchor:
    """The audit trail's key (``audit_key``, else a key file generated under the home), head
    checkpoint and witness log; AnchorError if the key cannot be used."""
    head, witness = settings.paths.audit_head, settings.witness
    if settings.audit_key is not None:
        return Anchor.of(settings.audit_key.get_secret_value(), head, witness)
    return Anchor.generated(settings.paths.audit_key, head, witness)


def open_ledger(settings: Settings) -> Ledger:
    """The profile's ledger, its schema created if missing."""
    anchor = audit_anchor(settings)
    if settings.profile is Profile.CLUSTER:
        dsn = settings.postgres_dsn.get_secret_value()
        return Ledger.postgresql(dsn, settings.ledger_schema, anchor, settings.ledger_busy_seconds)
    return Ledger.sqlite(settings.paths.ledger_db, anchor, settings.ledger_busy_seconds)


def dispatch_backend(settings: Settings) -> Backend:
    endpoints = len(settings.action_endpoints)
    where = (
        f"(a {settings.action_lease_seconds:g} s lease in the ledger): its holder delivers to "
        f"{endpoints} HTTP endpoint(s), other actions to {settings.paths.outbox}"
    )
    return Backend(Concern.DISPATCH, "leased dispatcher", where)


def describe(settings: Settings) -> list[Backend]:
    """Every backend the action layer builds for this profile."""
    return [intake_backend(settings), ledger_backend(settings), dispatch_backend(settings)]
