"""The audit trail's anchor: a secret key that MACs every row of the chain (HMAC-SHA256), and
a head checkpoint — the last row's sequence number and MAC, sealed with the same key — kept in
a file apart from the database.

Whoever can write the database but not read the key can neither recompute the chain after an
edit (the MACs would not match) nor delete its last rows unnoticed (the checkpoint names a row
the trail no longer reaches).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
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


@dataclass(frozen=True)
class Anchor:
    key: bytes
    head_path: Path

    @classmethod
    def of(cls, key: str, head_path: Path) -> Anchor:
        """An anchor with a key given as text (the environment's)."""
        if len(key) < MIN_KEY_CHARS:
            raise AnchorError(f"the audit key must have at least {MIN_KEY_CHARS} characters")
        return cls(key.encode(), head_path)

    @classmethod
    def generated(cls, key_file: Path, head_path: Path) -> Anchor:
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
        return cls.of(key_file.read_text().strip(), head_path)

    def mac(self, prev: str, values: tuple) -> str:
        """HMAC-SHA256 of the previous row's MAC and this row's values (``repr`` tells None
        from "" and 1 from "1")."""
        return hmac.new(self.key, f"{prev}{values!r}".encode(), hashlib.sha256).hexdigest()

    def _seal(self, seq: int, mac: str) -> str:
        return hmac.new(self.key, f"head|{seq}|{mac}".encode(), hashlib.sha256).hexdigest()

    def head(self) -> Head | None:
        """The checkpoint, None if none was written; AnchorError if it was not sealed by the
        key (forged, or written with another key) or cannot be read."""
        try:
            data = json.loads(self.head_path.read_text())
            head = Head(int(data["seq"]), str(data["mac"]))
            sealed = hmac.compare_digest(self._seal(head.seq, head.mac), str(data["seal"]))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as error:
            raise AnchorError(f"head checkpoint {self.head_path} is unreadable: {error}") from None
        if not sealed:
            raise AnchorError(f"head checkpoint {self.head_path} is not sealed by the audit key")
        return head

    def checkpoint(self, head: Head) -> None:
        """Record ``head`` as the trail's last row, unless the file already names a later one
        (another writer's) or is not sealed (kept as evidence for ``audit verify``); written
        whole or not at all, mode 0600."""
        try:
            current = self.head()
        except AnchorError:
            return
        if current is not None and current.seq >= head.seq:
            return
        self.head_path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(
            {"seq": head.seq, "mac": head.mac, "seal": self._seal(head.seq, head.mac)}
        )
        partial = self.head_path.with_name(f".{self.head_path.name}.{os.getpid()}")
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(text)
        partial.replace(self.head_path)
