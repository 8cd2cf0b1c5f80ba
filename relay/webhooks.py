"""Completion webhooks: an outbox in PostgreSQL, sent HMAC-signed, retried with backoff.

The row is written in the same statement as the result, so a relay that dies before sending still
sends later (any relay: rows are claimed with SKIP LOCKED). URLs go through the same SSRF guard as
the worker's fetches (core.ssrf): public addresses only, port 80, 443, 8080-8999 or one of the tenant's
allowed ports, each connection pinned to the vetted address. The URL was checked when it was set
(relay.tenants.set_webhook); it is checked again, with DNS, at every attempt.

One delivery that fails in any way (a refused or unparsable URL, a bug) is marked failed with its reason,
and the sender goes on with the next: one tenant's webhook never stops another's.

Receivers check ``Insane-Signature: t=<unix seconds>,v1=<hex>`` where
``hex = HMAC-SHA256(secret, f"{t}." + raw body)``; see :func:`verify_signature`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
from typing import TYPE_CHECKING

import httpx

from core.ssrf import PIN_EXTENSION, GuardedTransport, ResolveError, SsrfBlocked, SsrfGuard
from relay.db import DatabaseUnavailable, system_tx, tenant_tx
from relay.views import event_view

if TYPE_CHECKING:
    import asyncpg

    from relay.state import RelayState

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "Insane-Signature"

CLAIM_SQL = """
UPDATE webhook_deliveries d SET next_at = now() + interval '120 seconds', attempts = d.attempts + 1
FROM tenants t
WHERE d.id IN (SELECT id FROM webhook_deliveries WHERE status = 'pending' AND next_at <= now()
               ORDER BY next_at LIMIT $1 FOR UPDATE SKIP LOCKED)
  AND t.id = d.tenant_id
RETURNING d.id, d.event_id, d.tenant_id, d.attempts, t.webhook_url, t.webhook_secret, t.allow_ports
"""


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify_signature(secret: str, body: bytes, header: str, tolerance_s: float = 300) -> bool:
    """What a receiver runs: the MAC matches and the timestamp is recent."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        t = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - t) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, body, t), header)


def backoff_s(attempt: int) -> float:
    return min(3600.0, 2.0**attempt)


def guarded_client(guard: SsrfGuard | None = None) -> httpx.AsyncClient:
    transport = GuardedTransport(guard or SsrfGuard())
    return httpx.AsyncClient(transport=transport, follow_redirects=False, timeout=httpx.Timeout(10.0))


async def _finish(relay: RelayState, delivery_id: int, status: str, error: str | None, retry_in: float) -> None:
    async with system_tx(relay.pool) as conn:
        await conn.execute(
            "UPDATE webhook_deliveries SET status = $2, last_error = $3, "
            "next_at = now() + make_interval(secs => $4) WHERE id = $1",
            delivery_id,
            status,
            error,
            retry_in,
        )


async def send_due(relay: RelayState, client: httpx.AsyncClient, guard: SsrfGuard, limit: int = 20) -> int:
    """Send what is due; returns how many were delivered. ``guard``: the rules of ``client``'s transport."""
    async with system_tx(relay.pool) as conn:
        rows = await conn.fetch(CLAIM_SQL, limit)
    sent = 0
    for row in rows:
        try:
            sent += await _deliver(relay, client, guard, row)
        except DatabaseUnavailable:
            raise  # the rows stay claimed and come back when the claim lapses (120 s)
        except Exception as exc:  # one delivery's failure, whatever it is, must not stop the others
            log.exception("webhook delivery %s for tenant %s failed", row["id"], row["tenant_id"])
            await _finish(relay, row["id"], "failed", f"{type(exc).__name__}: {exc}"[:500], 0)
            relay.metrics.webhooks.labels("failed").inc()
    return sent


async def _deliver(relay: RelayState, client: httpx.AsyncClient, guard: SsrfGuard, row: asyncpg.Record) -> int:
    """One attempt: 1 when delivered, else 0 (marked failed, or pending with a backoff)."""
    url = row["webhook_url"]
    if not url:
        await _finish(relay, row["id"], "failed", "the tenant has no webhook URL any more", 0)
        return 0
    error: str | None = None
    try:
        target = await guard.with_lists((), row["allow_ports"]).check(url)
    except SsrfBlocked as exc:
        await _finish(relay, row["id"], "failed", f"refused by the SSRF guard: {exc}", 0)
        relay.metrics.webhooks.labels("blocked").inc()
        log.warning("webhook for tenant %s refused: %s", row["tenant_id"], exc)
        return 0
    except ResolveError as exc:
        error = f"{type(exc).__name__}: {exc}"
    else:
        async with tenant_tx(relay.pool, row["tenant_id"]) as conn:
            view = await event_view(conn, row["tenant_id"], row["event_id"])
        event = view.model_dump(mode="json", exclude={"queue"}) if view is not None else None
        body = json.dumps({"type": "event.completed", "event": event}).encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(row["webhook_secret"], body),
            "User-Agent": "insane-relay",
        }
        try:
            response = await client.post(url, content=body, headers=headers, extensions={PIN_EXTENSION: target})
            if 200 <= response.status_code < 300:
                await _finish(relay, row["id"], "sent", None, 0)
                relay.metrics.webhooks.labels("sent").inc()
                return 1
            error = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
    final = row["attempts"] >= relay.settings.webhook_max_attempts
    await _finish(relay, row["id"], "failed" if final else "pending", error, backoff_s(row["attempts"]))
    relay.metrics.webhooks.labels("failed" if final else "retry").inc()
    log.info("webhook for event %s attempt %d failed: %s", row["event_id"], row["attempts"], error)
    return 0


async def run(relay: RelayState, client: httpx.AsyncClient, guard: SsrfGuard, poll_s: float = 2.0) -> None:
    """The sender loop, started in the lifespan: woken by new results, polling for retries."""
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(relay.webhooks_due.wait(), poll_s)
        relay.webhooks_due.clear()
        try:
            while await send_due(relay, client, guard) > 0:
                pass
        except DatabaseUnavailable as exc:
            log.warning("webhook sender paused: %s", exc)
        except Exception:  # the loop serves every tenant: log, wait for the next poll, go on
            log.exception("webhook sender pass failed; trying again in %s s", poll_s)
