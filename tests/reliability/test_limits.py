"""Limits under pressure: a Pro tenant at twice its rate gets exactly rate × time + burst (±1), and a
Guardian tenant's 100 concurrent deep reviews spread over two relay processes get exactly 5 in.

(The single-process quota race is tests/relay/test_events.py; this one crosses processes.)
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator

import asyncpg
import httpx
import pytest

from insane.devkit.client import ADMIN_TOKEN, event_body, make_tenant
from insane.devkit.relay import (
    RelayServer,
    fresh_database,
    fresh_redis_url,
    relay_settings,
    run_sync,
    start_relay_process,
)

pytestmark = pytest.mark.timeout(120)
RATE, BURST = 5.0, 10


def _set_pro_tier(db_url: str) -> None:
    async def go() -> None:
        conn = await asyncpg.connect(db_url)
        try:
            await conn.execute("UPDATE tiers SET rate_per_s = $1, burst = $2 WHERE name = 'pro'", RATE, BURST)
        finally:
            await conn.close()

    run_sync(go())


@pytest.fixture(scope="module")
def db(services) -> str:
    url = fresh_database(services)
    _set_pro_tier(url)
    return url


def test_pro_at_twice_its_rate_gets_rate_times_time_plus_burst(services, db) -> None:
    with RelayServer(relay_settings(services, db), background=False) as relay:
        tenant = make_tenant(relay.url, tier="pro")
        sent: list[tuple[float, int]] = []
        with httpx.Client(base_url=relay.url, headers=tenant.headers, timeout=30) as client:
            client.get("/healthz")  # connection warm before the clock starts
            t0 = time.monotonic()
            for i in range(int(2 * RATE * 6)):  # 2× the rate for 6 s
                time.sleep(max(0.0, t0 + i / (2 * RATE) - time.monotonic()))
                at = time.monotonic()
                sent.append((at, client.post("/v1/events", json=event_body(1)).status_code))
    codes = [code for _, code in sent]
    assert set(codes) <= {202, 429}, codes
    elapsed = sent[-1][0] - sent[0][0]
    expected = RATE * elapsed + BURST
    assert abs(codes.count(202) - expected) <= 1, (codes.count(202), expected)
    assert codes[:BURST] == [202] * BURST and codes.count(429) >= 20


async def _burst(urls: list[str], headers: dict, n: int) -> list[int]:
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=100)) as client:
        answers = await asyncio.gather(
            *(client.post(f"{urls[i % len(urls)]}/v1/events", headers=headers, json=event_body(20)) for i in range(n))
        )
    return [r.status_code for r in answers]


@pytest.fixture
def two_relays(services, db) -> Iterator[list[str]]:
    env = dict(
        os.environ,
        INSANE_DATABASE_URL=db,
        INSANE_REDIS_URL=fresh_redis_url(services),
        INSANE_ADMIN_TOKEN=ADMIN_TOKEN,
        INSANE_LOG_LEVEL="WARNING",
    )
    procs = []
    try:
        for _ in range(2):
            procs.append(start_relay_process(env))
        yield [url for _, url in procs]
    finally:
        for proc, _ in procs:
            proc.terminate()
        for proc, _ in procs:
            proc.wait(30)
            proc.stdout.close()
            proc.stderr.close()


def test_guardian_quota_holds_across_two_relay_processes(two_relays) -> None:
    tenant = make_tenant(two_relays[0], name=f"g-{uuid.uuid4().hex[:6]}", tier="guardian")
    codes = asyncio.run(_burst(two_relays, tenant.headers, 100))
    assert codes.count(202) == 5 and codes.count(429) == 95, codes
