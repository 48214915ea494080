"""The models being served: the registry's ``champion`` of each name, swapped when the alias moves.

Each champion is copied to a disk cache as it is loaded. A service starts from the newest cached
copy of each model at once (no registry, no MLflow import on the start path) and is ready once
the registry confirms that version, or names another which is then loaded and swapped in. When
the registry cannot be reached at start, names no champion (an empty store, a deleted alias) or
gives a version that cannot be loaded, the service serves the last good copy from that cache and
says why; the watcher keeps asking the registry and moves to the alias's version as soon as it
has one. A cached copy that
fails its checksums is quarantined with its reason and the version served before it is tried
next; each model is loaded on its own, so one model's failure leaves the others serving.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from training.model import ScoringModel

if TYPE_CHECKING:
    from training.registry import ModelVersion

log = logging.getLogger("closedloop.serving")

MANIFEST = "manifest.json"  # the SHA-256 of each file of a cached copy, written last
SERVED = "served.json"  # the versions served, oldest first
QUARANTINE = "quarantine"
DISK = "disk cache"
UNCONFIRMED = "started from the disk cache; the registry has not answered yet"


@dataclass(frozen=True)
class Champion:
    """One loaded model version and where it came from."""

    name: str
    version: str
    feature_service: str
    model: ScoringModel
    source: str  # "registry" or "disk cache"


class CorruptModelError(Exception):
    """A cached copy failed its checksums or could not be loaded; it has been quarantined."""


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class ModelCache:
    """Last good model versions on disk: ``<folder>/<name>/<version>/`` holds a copy and its
    manifest, ``<name>/served.json`` the versions served (newest last), and
    ``<name>/quarantine/`` the copies that failed, each with a ``REASON`` file."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _copy(self, name: str, version: str) -> Path:
        return self.folder / name / version

    def has(self, name: str, version: str) -> bool:
        return (self._copy(name, version) / MANIFEST).exists()

    def save(self, champion: Champion) -> None:
        """Write a copy beside its final place, then move it there whole."""
        final = self._copy(champion.name, champion.version)
        partial = final.with_name(f"{final.name}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        champion.model.save(partial)
        files = {f.name: _digest(f) for f in sorted(partial.iterdir())}
        (partial / MANIFEST).write_text(json.dumps({"sha256": files}, indent=1))
        shutil.rmtree(final, ignore_errors=True)  # a copy left without its manifest
        partial.rename(final)

    def served(self, name: str) -> list[dict[str, str]]:
        """The versions served, newest first (version and feature service)."""
        path = self.folder / name / SERVED
        try:
            entries = json.loads(path.read_text()) if path.exists() else []
        except ValueError:
            log.error("%s is not JSON; no last good version is known", path)
            return []
        return list(reversed(entries))

    def _write_served(self, name: str, newest_first: list[dict[str, str]]) -> None:
        path = self.folder / name / SERVED
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(list(reversed(newest_first)), indent=1))
        partial.replace(path)

    def remember(self, champion: Champion) -> None:
        """Record a version already saved as the newest one served (no write when it is)."""
        entry = {"version": champion.version, "feature_service": champion.feature_service}
        served = self.served(champion.name)
        if served[:1] == [entry]:
            return
        others = [e for e in served if e["version"] != champion.version]
        self._write_served(champion.name, [entry, *others])

    def load(self, name: str, version: str, feature_service: str, source: str) -> Champion:
        """A cached copy, checked against its manifest first (LightGBM aborts the whole process
        on some truncated files); raises :class:`CorruptModelError` after quarantining it."""
        folder = self._copy(name, version)
        try:
            expected = json.loads((folder / MANIFEST).read_text())["sha256"]
            for file, digest in expected.items():
                if _digest(folder / file) != digest:
                    raise CorruptModelError(f"{file} does not match its checksum")
            model = ScoringModel.load(folder)
        except Exception as error:
            reason = str(error) if isinstance(error, CorruptModelError) else repr(error)
            self.quarantine(name, version, reason)
            raise CorruptModelError(f"cached version {version}: {reason}") from None
        return Champion(name, version, feature_service, model, source)

    def quarantine(self, name: str, version: str, reason: str) -> Path:
        """Move a cached copy aside with its reason, and forget it was served."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        aside = self.folder / name / QUARANTINE / f"{version}-{stamp}"
        aside.parent.mkdir(parents=True, exist_ok=True)
        source = self._copy(name, version)
        if source.exists():
            source.rename(aside)
        else:
            aside.mkdir()
        (aside / "REASON").write_text(reason + "\n")
        self._write_served(name, [e for e in self.served(name) if e["version"] != version])
        log.error("%s version %s quarantined to %s: %s", name, version, aside, reason)
        return aside


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
    reason: str | None = None  # why the registry's champion is not what is served
    quarantined: list[str] = field(default_factory=list)


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
        self._failed: dict[str, str] = {}  # name -> the registry's version that did not load
        self.status = {name: ModelStatus() for name in names}
        self._swapping = threading.RLock()
        self._unconfirmed: set[str] = set()  # started from the disk cache, registry not asked
        self._settled = threading.Event()  # the registry answered once, or was given up on
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._timer: threading.Timer | None = None

    def get(self, name: str) -> Champion | None:
        return self._models.get(name)

    @property
    def ready(self) -> bool:
        """Whether any model can be served (the others answer 503 until they load) and the
        registry has answered once or was given up on. A copy started from the disk cache
        scores before that; it is not ready until confirmed."""
        return bool(self._models) and self._settled.is_set()

    def refresh(self) -> list[str]:
        """Ask the registry for each alias; load and swap in what moved. Returns what changed.
        Each model on its own: whatever goes wrong with one leaves the others as they were."""
        changed = []
        for name in self.names:
            try:
                if self._refresh(name):
                    changed.append(name)
            except Exception as error:
                log.exception("%s: the model could not be refreshed", name)
                self._fall_back(name, f"refresh failed: {type(error).__name__}: {error}")
        self._settled.set()
        return changed

    def _refresh(self, name: str) -> bool:
        status = self.status[name]
        status.checked_at = datetime.now(UTC)
        try:
            found = self._lookup(name)
        except Exception as error:  # the registry is an outside system: never fatal here
            if status.registry_error is None:
                log.error("%s: the registry cannot be read: %s", name, error)
            status.registry_error = f"{type(error).__name__}: {error}"
            self._fall_back(name, f"the registry cannot be read ({status.registry_error})")
            return False
        status.registry_error = None
        if found is None:
            self._fall_back(name, "the registry names no champion (empty store or alias deleted)")
            return False
        current = self._models.get(name)
        if current is not None and current.version == found.version:
            status.source, status.reason = "registry", None  # a copy from disk, now confirmed
            self._unconfirmed.discard(name)
            if not self._cache.has(name, current.version):
                self._cache.save(current)  # its copy was lost or quarantined: this one is good
            self._cache.remember(current)  # the champion again, whoever served another since
            return False
        if self._failed.get(name) == found.version:
            return False  # said so when it failed; tried again when the alias moves
        try:
            champion = self._load(name, found)
        except Exception as error:
            self._failed[name] = found.version
            log.exception("%s: version %s cannot be loaded", name, found.version)
            self._fall_back(name, f"version {found.version} cannot be loaded: {error!r}")
            return False
        self._failed.pop(name, None)
        self._swap(champion)
        return True

    def _load(self, name: str, found: ModelVersion) -> Champion:
        if self._cache.has(name, found.version):
            try:
                return self._cache.load(name, found.version, found.feature_service, "registry")
            except CorruptModelError as error:
                self.status[name].quarantined.append(str(error))  # fetched again below
        champion = self._fetch(found)
        self._cache.save(champion)
        return champion

    def _swap(self, champion: Champion) -> None:
        with self._swapping:
            old = self._models.get(champion.name)
            self._models[champion.name] = champion  # one reference swap: old or new, never half
            self._cache.remember(champion)
            self._unconfirmed.discard(champion.name)
        self._on_swap(champion, old)
        status = self.status[champion.name]
        status.version, status.feature_service = champion.version, champion.feature_service
        status.source, status.loaded_at = champion.source, datetime.now(UTC)
        status.reason = None
        log.info(
            "serving %s version %s (from %s)", champion.name, champion.version, champion.source
        )

    def _newest_cached(self, name: str) -> Champion | None:
        """The newest cached copy that passes its manifest and loads; those that do not are
        quarantined on the way."""
        for entry in self._cache.served(name):
            try:
                return self._cache.load(name, entry["version"], entry["feature_service"], DISK)
            except CorruptModelError as error:
                self.status[name].quarantined.append(str(error))
        return None

    def _fall_back(self, name: str, why: str) -> None:
        """The registry's champion cannot be served: keep the version served, or start from the
        newest cached copy that loads, quarantining those that do not."""
        status = self.status[name]
        with self._swapping:
            last_good = name in self._unconfirmed  # started from disk: now the last good one
            if name not in self._models:
                champion = self._newest_cached(name)
                if champion is not None:
                    self._swap(champion)
                    last_good = True
                elif status.reason != why:
                    log.error("%s: %s, and no good copy is cached", name, why)
            if last_good:
                self._unconfirmed.discard(name)
                log.warning(
                    "%s: %s; serving the last known good version %s from the disk cache",
                    name, why, status.version,
                )  # fmt: skip
            elif name in self._models and status.reason != why:
                log.warning("%s: %s; still serving version %s", name, why, status.version)
            status.reason = why

    def _start_from_cache(self) -> None:
        """Serve each model's newest good cached copy at once, until the registry answers."""
        for name in self.names:
            champion = self._newest_cached(name)
            if champion is not None:
                self._swap(champion)
                self._unconfirmed.add(name)
                self.status[name].reason = UNCONFIRMED

    def _give_up_waiting(self, answer_within: float) -> None:
        """The registry gave no first answer in time: each model not confirmed falls back."""
        if self._settled.is_set():
            return
        why = f"the registry gave no answer within {answer_within:g} s"
        for name in self.names:
            status = self.status[name]
            if name not in self._models or name in self._unconfirmed:
                status.registry_error = status.registry_error or (
                    f"no answer within {answer_within:g} s"
                )
                self._fall_back(name, why)
        self._settled.set()

    def start(
        self, every_seconds: float, answer_within: float, connect: Callable[[], None] = lambda: None
    ) -> None:
        """Start from the disk cache, then ask the registry (after ``connect``) and keep
        watching it in a background thread.

        Returns at once. The service is ready when the registry first answers or, at the
        latest, ``answer_within`` seconds later: then each model not confirmed is served from
        the last good copy on disk, with the reason.
        """
        self._start_from_cache()

        def loop() -> None:
            try:
                connect()
            except Exception:
                log.exception("the registry cannot be set up")
            self.refresh()
            while not self._stop.wait(every_seconds):
                self.refresh()

        self._watcher = threading.Thread(target=loop, name="champion-watcher", daemon=True)
        self._watcher.start()
        self._timer = threading.Timer(answer_within, self._give_up_waiting, (answer_within,))
        self._timer.daemon = True
        self._timer.start()

    def stop(self) -> None:
        self._stop.set()
        if self._timer is not None:
            self._timer.cancel()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
