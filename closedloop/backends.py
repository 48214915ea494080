"""What a profile's factories built, described in words: ``closedloop settings`` prints these.

Each concern (online store, ledger, ...) is built by one factory in its stage's package, chosen
by the profile. The factory also describes what it builds, so the description cannot name a
backend that no code wires; a concern a profile does not build yet says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit


class Concern(StrEnum):
    """A kind of state or work whose backend the profile chooses."""

    ONLINE_STORE = "Feast online store"
    LIVE_FEATURES = "live cell telemetry pushes"
    OFFLINE_STORE = "Feast registry and offline store"
    TRACKING = "MLflow tracking and registry"
    EVENT_INTAKE = "network event intake"
    LEDGER = "action ledger and audit trail"
    DISPATCH = "action dispatch"
    TRAINING = "where LightGBM trains"


@dataclass(frozen=True)
class Backend:
    """The backend a factory builds for one concern, or the fact that it builds none yet."""

    concern: Concern
    kind: str  # e.g. "sqlite", "postgresql"; "not wired" when the profile builds nothing
    where: str = ""  # a path or a redacted address
    wired: bool = True

    @classmethod
    def missing(cls, concern: Concern, why: str) -> Backend:
        return cls(concern, "not wired", why, wired=False)

    def describe(self) -> str:
        if not self.wired:
            return f"{self.kind}: {self.where}"
        return f"{self.kind} {self.where}".strip()


def redis_address(url: str) -> str:
    """``host:port db N`` of a Redis URL, without its password."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 6379} db {parts.path.strip('/') or 0}"
