"""The audit trail's anchor: a secret key that MACs every row of the chain (HMAC-SHA256), and
a head checkpoint — the last row's sequence number and MAC, sealed with the same key — kept in
a file apart from the database.

Whoever can write the database but not read the key can neither recompute the chain after an
edit (the MACs would not match) nor delete its last rows unnoticed (the checkpoint names a row
the trail no longer reaches). Each checkpoint is also appended to a witness log, which is never
rewritten: putting back an older checkpoint file (from a backup) and cutting the rows after it
still leaves the witness naming the later row. Keep the witness where the database's
administrators cannot rewind it (``CLOSEDLOOP_AUDIT_WITNESS``: another host's mount, an
append-only file).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

MIN_KEY_CHARS = 16


class AnchorError(ValueError):
    """The key or the head checkpoint cannot be used (missing, too short, readable by others,
    not sealed by the key)."""


@dataclass(frozen=True)
class Head:
    """The last row a writer committed: its sequence number and MAC."""

    seq: int
    mac: str


WITNESS_TAIL = 8192  # bytes of the witness log's end read for its latest head


@dataclass(frozen=True)
class Anchor:
    key: bytes
    head_path: Path
    witness_path: Path | None = None

    @classmethod
    def of(cls, key: str, head_path: Path, witness_path: Path | None = None) -> Anchor:
        """An anchor with a key given as text (the environment's)."""
        if len(key) < MIN_KEY_CHARS:
            raise AnchorError(f"the audit key must have at least {MIN_KEY_CHARS} characters")
        return cls(key.encode(), head_path, witness_path)

    @classmethod
    def generated(cls, key_file: Path, head_path: Path, witness_path: Path | None = None) -> Anchor:
        """The key of ``key_file``, created (256 random bits, mode 0600) if it does not exist;
        a key file that others may read is refused."""
        key_file.parent.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            mode = stat.S_IMODE(key_file.stat().st_mode)
            if mode & 0o077:
                raise AnchorError(
                    f"{key_file} may be read by others (mode {mode:o}): chmod 600 it"
                ) from None
        else:
            with os.fdopen(descriptor, "w") as out:
                out.write(secrets.token_hex(32) + "\n")
        return cls.of(key_file.read_text().strip(), head_path, witness_path)

    def mac(self, prev: str, values: tuple) -> str:
        """HMAC-SHA256 of the previous row's MAC and this row's values (``repr`` tells None
        from "" and 1 from "1")."""
        return hmac.new(self.key, f"{prev}{values!r}".encode(), hashlib.sha256).hexdigest()

    def _seal(self, seq: int, mac: str) -> str:
        return hmac.new(self.key, f"head|{seq}|{mac}".encode(), hashlib.sha256).hexdigest()

    def _unsealed(self, text: str, where: str) -> Head:
        """The head a checkpoint's JSON names; AnchorError if unreadable or not sealed."""
        try:
            data = json.loads(text)
            head = Head(int(data["seq"]), str(data["mac"]))
            sealed = hmac.compare_digest(self._seal(head.seq, head.mac), str(data["seal"]))
        except (ValueError, KeyError, TypeError) as error:
            raise AnchorError(f"{where} is unreadable: {error}") from None
        if not sealed:
            raise AnchorError(f"{where} is not sealed by the audit key")
        return head

    def head(self) -> Head | None:
        """The checkpoint, None if none was written; AnchorError if it was not sealed by the
        key (forged, or written with another key) or cannot be read."""
        try:
            text = self.head_path.read_text()
        except FileNotFoundError:
            return None
        return self._unsealed(text, f"head checkpoint {self.head_path}")

    def witnessed(self) -> Head | None:
        """The latest head the witness log holds (its last lines), None without one;
        AnchorError for a line the key did not seal."""
        if self.witness_path is None:
            return None
        try:
            with self.witness_path.open("rb") as log:
                size = log.seek(0, os.SEEK_END)
                log.seek(max(0, size - WITNESS_TAIL))
                tail = log.read().decode(errors="replace").splitlines()
        except FileNotFoundError:
            return None
        lines = tail[1:] if size > WITNESS_TAIL else tail  # the first may be cut
        where = f"audit witness {self.witness_path}"
        heads = [self._unsealed(line, where) for line in lines if line.strip()]
        return max(heads, key=lambda h: h.seq, default=None)

    def latest(self) -> Head | None:
        """The later of the checkpoint and the witness's latest head."""
        found = [h for h in (self.head(), self.witnessed()) if h is not None]
        return max(found, key=lambda h: h.seq, default=None)

    def checkpoint(self, head: Head) -> None:
        """Record ``head`` as the trail's last row, in the checkpoint file (written whole or not
        at all, mode 0600) and appended to the witness log, unless they already name a later
        one (another writer's) or are not sealed (kept as evidence for ``audit verify``)."""
        try:
            current = self.latest()
        except AnchorError:
            return
        if current is not None and current.seq >= head.seq:
            return
        self.head_path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(
            {"seq": head.seq, "mac": head.mac, "seal": self._seal(head.seq, head.mac)}
        )
        if self.witness_path is not None:
            self.witness_path.parent.mkdir(parents=True, exist_ok=True)
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
            descriptor = os.open(self.witness_path, flags, 0o600)
            with os.fdopen(descriptor, "w") as log:
                log.write(text + "\n")  # one write of a short line: appended whole
        writer = f"{os.getpid()}.{threading.get_ident()}"  # a worker's dispatcher commits too
        partial = self.head_path.with_name(f".{self.head_path.name}.{writer}")
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(text)
        partial.replace(self.head_path)
