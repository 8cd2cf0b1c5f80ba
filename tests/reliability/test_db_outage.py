"""PostgreSQL down: a worker the relay already knows keeps leasing and renewing its leases (they need
only Redis), so its work is not reclaimed and reviewed twice; a worker it never saw gets 503."""

from __future__ import annotations

import threading
import time

import httpx
import redis

from core import keys
from insane.devkit.client import enroll_worker, event_body, make_tenant
from insane.devkit.relay import RelayServer, fresh_database, relay_settings
from insane.devkit.services import EmbeddedServices


def test_known_workers_keep_leasing_and_renewing_while_postgres_is_down(services) -> None:
    with EmbeddedServices(redis=False, durable=False) as own:
        settings = relay_settings(services, fresh_database(own), key_cache_s=0.2, lease_idle_s=30.0)
        with RelayServer(settings, background=False) as relay:
            tenant = make_tenant(relay.url)
            known, stranger = enroll_worker(relay.url, name="known"), enroll_worker(relay.url, name="stranger")
            httpx.post(f"{relay.url}/v1/events", json=event_body(1), headers=tenant.headers, timeout=30)
            first = httpx.post(
                f"{relay.url}/v1/worker/lease", json={"max_events": 1, "wait_s": 0}, headers=known.headers, timeout=30
            ).json()["events"]
            assert len(first) == 1
            httpx.post(f"{relay.url}/v1/events", json=event_body(1), headers=tenant.headers, timeout=30)
            answers: dict[str, int] = {}
            idle_ms: list[int] = []
            entry_id = first[0]["lease_id"].rsplit(":", 1)[1]
            redis_client = redis.Redis.from_url(settings.redis_url)

            def during_outage() -> None:
                time.sleep(1.0)  # PostgreSQL is down and the token cache (0.2 s) has expired
                with httpx.Client(base_url=relay.url, timeout=30) as client:
                    answers["lease"] = client.post(
                        "/v1/worker/lease", json={"max_events": 1, "wait_s": 0}, headers=known.headers
                    ).status_code
                    answers["heartbeat"] = client.post(
                        "/v1/worker/heartbeat", json={"leases": [first[0]["lease_id"]]}, headers=known.headers
                    ).status_code
                    idle_ms.extend(
                        p["time_since_delivered"]
                        for p in redis_client.xpending_range(
                            keys.stream(tenant.id, "standard"), "workers", min=entry_id, max=entry_id, count=1
                        )
                    )
                    answers["stranger"] = client.post(
                        "/v1/worker/lease", json={"max_events": 1, "wait_s": 0}, headers=stranger.headers
                    ).status_code
                    answers["event"] = client.post("/v1/events", json=event_body(1), headers=tenant.headers).status_code

            probe = threading.Thread(target=during_outage)
            time.sleep(1.0)  # the first lease is idle for a while before the outage
            probe.start()
            own.restart_postgres(down_s=3.0)  # from this thread: the restarted server is its child
            probe.join(30)
            pending = redis_client.xpending(keys.stream(tenant.id, "standard"), "workers")["pending"]
    assert answers == {"lease": 200, "heartbeat": 503, "stranger": 503, "event": 503}, answers
    # Renewed during the outage (the heartbeat's 503 is only its metrics write): idle ~0, not the 2 s
    # since it was leased.
    assert len(idle_ms) == 1 and idle_ms[0] < 500, idle_ms
    assert pending == 2  # the second event was leased during the outage
