"""The models being served: the registry's ``champion`` of each name, swapped when the alias moves.

Each champion is copied to a disk cache as it is loaded. When the registry cannot be reached at
start, the service starts from that last known good copy and says so; the watcher keeps asking
the registry and moves to the alias's version as soon as it answers.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from training.model import ScoringModel

if TYPE_CHECKING:
    from training.registry import ModelVersion

log = logging.getLogger("closedloop.serving")


@dataclass(frozen=True)
class Champion:
    """One loaded model version and where it came from."""

    name: str
    version: str
    feature_service: str
    model: ScoringModel
    source: str  # "registry" or "disk cache"


class ModelCache:
    """Last known good model versions on disk: ``<folder>/<name>/<version>/`` and a pointer."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _pointer(self, name: str) -> Path:
        return self.folder / name / "last_good.json"

    def has(self, name: str, version: str) -> bool:
        return (self.folder / name / version / "scoring.json").exists()

    def save(self, champion: Champion) -> None:
        champion.model.save(self.folder / champion.name / champion.version)

    def remember(self, champion: Champion) -> None:
        """Point ``last_good`` at a version already saved."""
        pointer = self._pointer(champion.name)
        partial = pointer.with_suffix(".partial")
        partial.write_text(
            json.dumps({"version": champion.version, "feature_service": champion.feature_service})
        )
        partial.replace(pointer)

    def load(self, name: str, version: str, feature_service: str, source: str) -> Champion:
        model = ScoringModel.load(self.folder / name / version)
        return Champion(name, version, feature_service, model, source)

    def last_good(self, name: str) -> Champion | None:
        pointer = self._pointer(name)
        if not pointer.exists():
            return None
        saved = json.loads(pointer.read_text())
        return self.load(name, saved["version"], saved["feature_service"], "disk cache")


def registry_lookup(name: str) -> ModelVersion | None:
    """The version the ``champion`` alias points at (MLflow must be connected)."""
    from training import registry

    return registry.champion_version(name)


def download(found: ModelVersion) -> Champion:
    """Fetch a registered version's scoring model from the registry."""
    from training import registry

    return Champion(
        found.name, found.version, found.feature_service, registry.load_model(found), "registry"
    )


@dataclass
class ModelStatus:
    """What health reports about one model."""

    version: str | None = None
    feature_service: str | None = None
    source: str | None = None
    loaded_at: datetime | None = None
    registry_error: str | None = None
    checked_at: datetime | None = None


class Champions:
    """The served models by name; ``get`` always returns a complete, loaded version."""

    def __init__(
        self,
        names: list[str],
        cache: ModelCache,
        lookup: Callable[[str], ModelVersion | None] = registry_lookup,
        fetch: Callable[[ModelVersion], Champion] = download,
        on_swap: Callable[[Champion, Champion | None], None] = lambda new, old: None,
    ) -> None:
        self.names = names
        self._on_swap = on_swap
        self._cache = cache
        self._lookup = lookup
        self._fetch = fetch
        self._models: dict[str, Champion] = {}
        self.status = {name: ModelStatus() for name in names}
        self._swapping = threading.RLock()
        self._first_refresh = threading.Event()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    def get(self, name: str) -> Champion | None:
        return self._models.get(name)

    @property
    def ready(self) -> bool:
        """Whether any model can be served (the others answer 503 until they load)."""
        return bool(self._models)

    def refresh(self) -> list[str]:
        """Ask the registry for each alias; load and swap in what moved. Returns what changed."""
        changed = []
        for name in self.names:
            status = self.status[name]
            status.checked_at = datetime.now(UTC)
            try:
                found = self._lookup(name)
            except Exception as error:  # the registry is an outside system: never fatal here
                if status.registry_error is None:
                    log.error("%s: the registry cannot be read: %s", name, error)
                status.registry_error = f"{type(error).__name__}: {error}"
                if name not in self._models:
                    self._start_from_cache(name)
                continue
            status.registry_error = None
            current = self._models.get(name)
            if found is None:
                continue
            if current is None or current.version != found.version:
                self._swap(self._load(name, found))
                changed.append(name)
            else:
                status.source = "registry"  # a version started from disk, now confirmed
        return changed

    def _load(self, name: str, found: ModelVersion) -> Champion:
        if self._cache.has(name, found.version):
            return self._cache.load(name, found.version, found.feature_service, "registry")
        champion = self._fetch(found)
        self._cache.save(champion)
        return champion

    def _swap(self, champion: Champion) -> None:
        with self._swapping:
            old = self._models.get(champion.name)
            self._models[champion.name] = champion  # one reference swap: old or new, never half
            self._cache.remember(champion)
        self._on_swap(champion, old)
        status = self.status[champion.name]
        status.version, status.feature_service = champion.version, champion.feature_service
        status.source, status.loaded_at = champion.source, datetime.now(UTC)
        log.info(
            "serving %s version %s (from %s)", champion.name, champion.version, champion.source
        )

    def _start_from_cache(self, name: str) -> None:
        with self._swapping:
            if name in self._models:
                return
            champion = self._cache.last_good(name)
            if champion is None:
                log.error("%s: no last known good model on disk either", name)
                return
            log.warning(
                "%s: registry unreachable (%s); starting from the last known good version %s",
                name,
                self.status[name].registry_error,
                champion.version,
            )
            self._swap(champion)

    def start(self, every_seconds: float, answer_within: float) -> None:
        """Load the champions and keep watching the registry in a background thread.

        Waits at most ``answer_within`` seconds for the registry's first answer; past that,
        each model not yet loaded starts from the last known good copy on disk.
        """

        def loop() -> None:
            self.refresh()
            self._first_refresh.set()
            while not self._stop.wait(every_seconds):
                self.refresh()

        self._watcher = threading.Thread(target=loop, name="champion-watcher", daemon=True)
        self._watcher.start()
        if not self._first_refresh.wait(answer_within):
            for name in self.names:
                status = self.status[name]
                if name not in self._models:
                    status.registry_error = status.registry_error or (
                        f"no answer within {answer_within:g} s"
                    )
                    self._start_from_cache(name)

    def stop(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
