"""API keys and worker tokens: ``prefix_id_secret`` strings whose secret is stored as SHA-256.

    key = new_secret("ik")            # Secret(full="ik_<id>_<secret>", id=..., sha256=...)
    parsed = parse_secret("ik", header_value)   # raises Problem(401) when malformed
    verify(parsed, stored_sha256)                # constant-time

The secret has 256 random bits; the id is looked up, the secret is only compared.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

from relay.problems import Problem

API_KEY_PREFIX = "ik"
WORKER_PREFIX = "iw"


@dataclass(frozen=True)
class Secret:
    full: str
    id: str
    secret: str

    @property
    def sha256(self) -> bytes:
        return hashlib.sha256(self.secret.encode()).digest()


def new_secret(prefix: str, ident: str | None = None) -> Secret:
    ident = ident or secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return Secret(f"{prefix}_{ident}_{secret}", ident, secret)


def parse_secret(prefix: str, value: str | None) -> Secret:
    if not value:
        raise Problem(
            401, "unauthenticated", "send Authorization: Bearer <key>", headers={"WWW-Authenticate": "Bearer"}
        )
    token = value.removeprefix("Bearer ").strip()
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != prefix or not parts[1] or len(parts[2]) < 16 or len(token) > 200:
        raise Problem(401, "unauthenticated", "malformed credentials", headers={"WWW-Authenticate": "Bearer"})
    return Secret(token, parts[1], parts[2])


def verify(secret: Secret, stored_sha256: bytes | None) -> bool:
    # Compare against a dummy digest when the id is unknown so timing says nothing about ids either.
    return hmac.compare_digest(secret.sha256, stored_sha256 or b"\0" * 32) and stored_sha256 is not None


def check_admin(header: str | None, token: str | None) -> None:
    if not token:
        raise Problem(403, "admin-disabled", "the admin API is off: set INSANE_ADMIN_TOKEN")
    given = (header or "").removeprefix("Bearer ").strip()
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise Problem(401, "unauthenticated", "a valid admin token is required", headers={"WWW-Authenticate": "Bearer"})


class TTLCache:
    """A small per-process cache; revocation takes effect everywhere within ``ttl`` seconds."""

    def __init__(self, ttl: float, size: int = 4096) -> None:
        self.ttl, self.size = ttl, size
        self._data: dict[str, tuple[float, Any]] = {}

    def get(self, key: str, stale: bool = False) -> Any:
        """The value, or None when absent or expired (``stale=True``: expired values too)."""
        hit = self._data.get(key)
        if hit is None or (hit[0] < time.monotonic() and not stale):
            return None
        return hit[1]

    def put(self, key: str, value: Any) -> None:
        if self.ttl <= 0:
            return
        if len(self._data) >= self.size:
            self._data.clear()
        self._data[key] = (time.monotonic() + self.ttl, value)

    def clear(self) -> None:
        self._data.clear()
