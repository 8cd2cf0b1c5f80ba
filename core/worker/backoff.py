"""The worker's retry loops use the shared backoff (``core.backoff``); this name stays for them."""

from core.backoff import Backoff

__all__ = ["Backoff"]
