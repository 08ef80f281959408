"""Access keys: write keys for the collector. Only hashes are stored."""

from __future__ import annotations

import hashlib
import secrets
from typing import Literal

import sqlalchemy as sa

from tenure.clock import Clock, SystemClock
from tenure.store.state import StateDB, api_keys

KeyKind = Literal["write"]


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyRing:
    """Creates and checks keys; remembers verified hashes so the hot path does no I/O."""

    def __init__(self, state: StateDB, clock: Clock | None = None) -> None:
        self.state = state
        self.clock = clock or SystemClock()
        self._valid: set[str] = set()

    def create(self, kind: KeyKind = "write", label: str = "default", key: str | None = None) -> str:
        """Store a new key (random unless given) and return it; it is never shown again."""
        key = key or secrets.token_urlsafe(24)
        with self.state.begin() as conn:
            conn.execute(
                api_keys.insert().values(
                    key_hash=_hash(key), kind=kind, label=label, created_at=self.clock.now(), revoked=False
                )
            )
        return key

    def verify(self, key: str | None, kind: KeyKind = "write") -> bool:
        if not key:
            return False
        digest = _hash(key)
        if digest in self._valid:
            return True
        with self.state.read() as conn:
            found = conn.execute(
                sa.select(api_keys.c.id).where(
                    (api_keys.c.key_hash == digest) & (api_keys.c.kind == kind) & ~api_keys.c.revoked
                )
            ).first()
        if found:
            self._valid.add(digest)
        return found is not None
