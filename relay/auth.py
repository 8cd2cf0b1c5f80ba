"""API keys and worker tokens: ``prefix_id_secret`` strings whose secret is stored as SHA-256.

    key = new_secret("ik")            # Secret(full="ik_<id>_<secret>", id=..., sha256=...)
    parsed = parse_secret("ik", header_value)   # raises Problem(401) when malformed
    verify(parsed, stored_sha256)                # constant-time

The secret has 256 random bits; the id is looked up, the secret is only compared.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from relay.problems import Problem

API_KEY_PREFIX = "ik"
WORKER_PREFIX = "iw"
_ID = re.compile(r"[A-Za-z0-9]{1,64}")  # ids are hex (keys: 16, workers: 32); anything else is never looked up


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
    if len(parts) != 3 or parts[0] != prefix or not _ID.fullmatch(parts[1]) or len(parts[2]) < 16 or len(token) > 200:
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


class LRUCache:
    """At most ``size`` entries, the least recently used evicted first; an entry is fresh for ``ttl`` seconds.

    Expired entries stay (until evicted) for ``get(key, stale=True)``: the worker API keeps serving known
    workers from them while PostgreSQL is down.
    """

    def __init__(self, ttl: float, size: int) -> None:
        self.ttl, self.size = ttl, size
        self._data: OrderedDict[str, tuple[float, Any]] = OrderedDict()

    def get(self, key: str, stale: bool = False) -> Any:
        """The value, or None when absent or expired (``stale=True``: expired values too)."""
        hit = self._data.get(key)
        if hit is None or (hit[0] < time.monotonic() and not stale):
            return None
        self._data.move_to_end(key)
        return hit[1]

    def put(self, key: str, value: Any) -> None:
        if self.ttl <= 0 or self.size <= 0:
            return
        self._data[key] = (time.monotonic() + self.ttl, value)
        self._data.move_to_end(key)
        while len(self._data) > self.size:
            self._data.popitem(last=False)

    def clear(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


class CredentialCache:
    """Looked-up credentials by id, so a request with a known key costs no PostgreSQL round trip.

    Ids that matched a live credential go in one LRU; ids that matched nothing (unknown, revoked) go in a
    separate, smaller one. A flood of random ids then churns only the second: it cannot evict the keys of
    real clients, and a client retrying a revoked key is answered from memory. Each unknown id still costs
    one indexed lookup the first time it is seen. Revocation takes effect everywhere within ``ttl``.
    """

    def __init__(self, ttl: float, size: int = 8192, miss_size: int = 1024) -> None:
        self.found = LRUCache(ttl, size)
        self.missing = LRUCache(ttl, miss_size)

    def get(self, key: str, stale: bool = False) -> Any:
        """What ``put`` stored for ``key`` (found or missing), or None when it must be looked up."""
        hit = self.found.get(key, stale)
        return hit if hit is not None else self.missing.get(key, stale)

    def put(self, key: str, value: Any, found: bool) -> None:
        (self.found if found else self.missing).put(key, value)

    def clear(self) -> None:
        self.found.clear()
        self.missing.clear()
