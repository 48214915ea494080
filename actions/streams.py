"""Event intake through a log (cluster profile): ``POST /events`` validates each event and appends
it; consumers in a group decide and commit what they read (the processor a replay uses, so
deduplication and guards are the same) and only then acknowledge it.

:class:`EventStream` is what the intake and the consumers need of a log; :class:`RedisStream`
is the one shipped (Redis Streams with a consumer group). A Kafka adapter would implement the
same protocol: append, read (own unacknowledged entries first, then those idle at another
consumer, then new ones), acknowledge, record a failure, dead-letter, trim.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from actions.intake import Record, admit
from actions.processor import Outcome, Processor
from actions.queries import RejectedRow
from closedloop.events import NetworkEvent

NO_ERROR = "delivered without being acknowledged: its consumers stopped before committing it"


class IntakeUnavailableError(RuntimeError):
    """The event log cannot be reached: nothing was appended."""


@dataclass(frozen=True)
class StreamEntry:
    """One entry of the log as a consumer reads it."""

    entry_id: str
    event: str | None  # the event's JSON; None when the entry was trimmed before it was read
    deliveries: int  # how many times the log handed it to a consumer of the group
    sender: str = ""  # the authenticated event source that posted it (scopes its id)
    by: str | None = None  # that principal's label, kept on each decision it makes


class EventStream(Protocol):
    """An append-only log of events read by a group of consumers."""

    name: str

    def append(
        self, events: list[NetworkEvent], sender: str = "", by: str | None = None
    ) -> list[str]:
        """Append in order, each with who sent it (``sender``, the authenticated source's name,
        and ``by``, its principal's label); the entries' ids. Raises
        :class:`IntakeUnavailableError`."""
        ...

    def read(self, consumer: str, count: int, block_seconds: float) -> list[StreamEntry]:
        """The consumer's own unacknowledged entries first, then entries idle too long at
        another consumer (taken over), then new ones (waiting up to ``block_seconds``)."""
        ...

    def ack(self, entry_ids: list[str]) -> None: ...

    def fail(self, entry_id: str, error: str) -> None:
        """Remember why processing an entry failed (shown if it is dead-lettered)."""
        ...

    def dead_letter(self, entry: StreamEntry, consumer: str) -> None:
        """Move the entry to the dead-letter log with its last error, and acknowledge it."""
        ...

    def dead_letters(self, limit: int) -> list[dict[str, str]]: ...

    def trim(self) -> None:
        """Drop entries every consumer of the group has acknowledged."""
        ...

    def close(self) -> None: ...


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisStream:
    """A Redis stream and its consumer group; the group is created (from the stream's start)
    when missing, so a Redis that lost its data takes new events again."""

    def __init__(
        self, url: str, name: str, group: str, claim_idle_seconds: float, timeout: float = 5.0
    ) -> None:
        import redis

        self.client = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self.name, self.group = name, group
        self.dead, self.errors = f"{name}:dead", f"{name}:errors"
        self.claim_idle_ms = int(claim_idle_seconds * 1000)
        self._claim_from = "0-0"  # where the next XAUTOCLAIM scan starts
        self._claimed_at = 0.0  # when the last scan completed (monotonic)
        self._group_ready = False

    def _ensure_group(self) -> None:
        import redis

        if self._group_ready:
            return
        try:
            self.client.xgroup_create(self.name, self.group, id="0", mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise
        self._group_ready = True

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """A group command; the group is made again if Redis lost it."""
        import redis

        self._ensure_group()
        try:
            return getattr(self.client, method)(*args, **kwargs)
        except redis.ResponseError as error:
            if "NOGROUP" not in str(error):
                raise
            self._group_ready = False
            self._ensure_group()
            return getattr(self.client, method)(*args, **kwargs)

    def append(
        self, events: list[NetworkEvent], sender: str = "", by: str | None = None
    ) -> list[str]:
        import redis

        if not events:
            return []
        who = {"sender": sender, **({"by": by} if by is not None else {})}
        try:
            with self.client.pipeline(transaction=True) as pipe:
                for event in events:
                    fields = {"event_id": event.event_id, "event": event.model_dump_json(), **who}
                    pipe.xadd(self.name, fields)
                return [_text(i) for i in pipe.execute()]
        except redis.RedisError as error:
            raise IntakeUnavailableError(f"event stream {self.name} unavailable: {error}") from None

    def read(self, consumer: str, count: int, block_seconds: float) -> list[StreamEntry]:
        own = self._call("xreadgroup", self.group, consumer, {self.name: "0"}, count=count)
        entries = own[0][1] if own else []
        if entries:
            return self._counted(consumer, entries)
        claimed = self._claim(consumer, count)
        if claimed:
            return self._counted(consumer, claimed)
        block = max(1, int(block_seconds * 1000))
        new = self._call("xreadgroup", self.group, consumer, {self.name: ">"}, count, block)
        return [self._entry(i, fields, 1) for i, fields in (new[0][1] if new else [])]

    def _claim(self, consumer: str, count: int) -> list[tuple[Any, Any]]:
        """Entries idle past the limit at another consumer, now this one's; a full scan of the
        group's pending entries at most every half limit."""
        if self._claim_from == "0-0" and time.monotonic() - self._claimed_at < (
            self.claim_idle_ms / 2000
        ):
            return []
        answer = self._call(
            "xautoclaim", self.name, self.group, consumer, self.claim_idle_ms,
            start_id=self._claim_from, count=count,
        )  # fmt: skip
        self._claim_from = _text(answer[0])
        if self._claim_from == "0-0":
            self._claimed_at = time.monotonic()
        return answer[1]

    def _counted(self, consumer: str, entries: list[tuple[Any, Any]]) -> list[StreamEntry]:
        ids = [_text(i) for i, _ in entries]
        pending = self.client.xpending_range(
            self.name, self.group, min=ids[0], max=ids[-1], count=len(ids) * 2,
            consumername=consumer,
        )  # fmt: skip
        times = {_text(p["message_id"]): int(p["times_delivered"]) for p in pending}
        return [self._entry(i, fields, times.get(_text(i), 1)) for i, fields in entries]

    @staticmethod
    def _entry(entry_id: Any, fields: Any, deliveries: int) -> StreamEntry:
        fields = fields or {}
        event = _text(fields[b"event"]) if b"event" in fields else None
        sender = _text(fields.get(b"sender", b""))
        by = _text(fields[b"by"]) if b"by" in fields else None
        return StreamEntry(_text(entry_id), event, deliveries, sender, by)

    def ack(self, entry_ids: list[str]) -> None:
        if not entry_ids:
            return
        with self.client.pipeline(transaction=True) as pipe:
            pipe.xack(self.name, self.group, *entry_ids)
            pipe.hdel(self.errors, *entry_ids)
            pipe.execute()

    def fail(self, entry_id: str, error: str) -> None:
        self.client.hset(self.errors, entry_id, error[:2000])

    def dead_letter(self, entry: StreamEntry, consumer: str) -> None:
        error = self.client.hget(self.errors, entry.entry_id)
        fields = {
            "entry_id": entry.entry_id,
            "event": entry.event or "",
            "error": _text(error) if error else NO_ERROR,
            "deliveries": entry.deliveries,
            "consumer": consumer,
            "at": datetime.now(UTC).isoformat(),
        }
        with self.client.pipeline(transaction=True) as pipe:
            pipe.xadd(self.dead, fields)
            pipe.xack(self.name, self.group, entry.entry_id)
            pipe.hdel(self.errors, entry.entry_id)
            pipe.execute()

    def dead_letters(self, limit: int) -> list[dict[str, str]]:
        import redis

        try:
            found = self.client.xrange(self.dead, count=limit)
        except redis.RedisError as error:
            raise IntakeUnavailableError(f"{self.dead} unavailable: {error}") from None
        return [
            {"id": _text(i), **{_text(k): _text(v) for k, v in fields.items()}}
            for i, fields in found
        ]

    def trim(self) -> None:
        groups = {_text(g["name"]): g for g in self._call("xinfo_groups", self.name)}
        last = _text(groups[self.group]["last-delivered-id"])
        pending = self.client.xpending(self.name, self.group)
        oldest = _text(pending["min"]) if pending["pending"] else last
        keep_from = min((oldest, last), key=lambda i: tuple(int(p) for p in i.split("-")))
        self.client.xtrim(self.name, minid=keep_from, approximate=True)

    def length(self) -> int:
        return int(self.client.xlen(self.name))

    def close(self) -> None:
        self.client.close()


def enqueue(
    stream: EventStream,
    processor: Processor,
    records: list[Record],
    sender: str = "",
    by: str | None = None,
) -> list[Outcome]:
    """Validate each record on its own; append the valid events to the stream (outcome
    ``queued``) with who sent them (``sender`` scopes their ids, ``by`` is kept on each decision
    they make, as on the embedded profile) and keep the others in the ledger with their reason
    (``rejected``), as a replay does (first: keeping one again adds nothing). Raises
    :class:`IntakeUnavailableError`, and then no event was appended."""
    now = processor.clock()
    admitted = [admit(record, now, processor.directory) for record in records]
    events = [a for a in admitted if isinstance(a, NetworkEvent)]
    rejected = [a for a in admitted if isinstance(a, RejectedRow)]
    if rejected:
        processor.process_many([], rejected)
    stream.append(events, sender, by)
    return [
        Outcome(a.event_id, "queued")
        if isinstance(a, NetworkEvent)
        else Outcome(a.event_id, "rejected", reason=a.reason)
        for a in admitted
    ]


def entry_record(stream: str, entry: StreamEntry) -> Record:
    """The record a consumer hands the processor: the entry's event as appended."""
    return Record(entry.event or "", f"stream {stream} {entry.entry_id}", 0)


def dead_letter_summary(row: dict[str, str]) -> dict[str, Any]:
    """A dead letter as printed: its event id, if the event is JSON with one."""
    try:
        event_id = json.loads(row.get("event") or "{}").get("event_id")
    except ValueError:
        event_id = None
    return {**row, "event_id": event_id}
