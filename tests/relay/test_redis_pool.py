"""A burst of requests larger than the relay's Redis pool waits for a connection instead of failing."""

from __future__ import annotations

import asyncio

import httpx

from insane.devkit.client import enroll_worker
from insane.devkit.relay import RelayServer, fresh_database, relay_settings


def test_a_burst_past_the_redis_pool_waits_instead_of_answering_503(services) -> None:
    settings = relay_settings(services, fresh_database(services), redis_max_connections=4)
    with RelayServer(settings, background=False) as relay:
        workers = [enroll_worker(relay.url, name=f"w{i}") for i in range(4)]

        async def burst() -> list[int]:
            limits = httpx.Limits(max_connections=64)
            async with httpx.AsyncClient(base_url=relay.url, timeout=60, limits=limits) as client:
                calls = [
                    client.post("/v1/worker/lease", json={"max_events": 1, "wait_s": 0}, headers=w.headers)
                    for _ in range(15)
                    for w in workers
                ]
                return [r.status_code for r in await asyncio.gather(*calls)]

        statuses = asyncio.run(burst())
    assert statuses == [200] * 60, sorted(set(statuses))
