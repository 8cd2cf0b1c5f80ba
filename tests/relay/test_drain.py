"""A relay shutting down ends its long-lived requests at once with a normal answer, instead of holding
the shutdown until uvicorn's graceful timeout and then cancelling them."""

from __future__ import annotations

import threading
import time

import httpx

from insane.devkit.client import enroll_worker, make_tenant
from insane.devkit.relay import RelayServer, fresh_database, relay_settings


def test_shutdown_ends_lease_long_polls_and_result_streams(services) -> None:
    relay = RelayServer(relay_settings(services, fresh_database(services))).__enter__()
    try:
        worker, tenant = enroll_worker(relay.url), make_tenant(relay.url)
        answers: dict[str, object] = {}
        streaming = threading.Event()

        def lease() -> None:
            r = httpx.post(
                f"{relay.url}/v1/worker/lease", json={"max_events": 4, "wait_s": 25}, headers=worker.headers, timeout=60
            )
            answers["lease"] = (r.status_code, r.json())

        def stream() -> None:
            lines = []
            with httpx.stream("GET", f"{relay.url}/v1/events/stream", headers=tenant.headers, timeout=60) as r:
                for line in r.iter_lines():
                    lines.append(line)
                    streaming.set()
            answers["stream"] = lines

        threads = [threading.Thread(target=lease), threading.Thread(target=stream)]
        for t in threads:
            t.start()
        assert streaming.wait(10)
        time.sleep(0.5)  # the lease is blocked in Redis by now
        started = time.monotonic()
    finally:
        relay.stop()
    stopped_in = time.monotonic() - started
    for t in threads:
        t.join(30)
    # The graceful timeout is 5 s and the long-poll 25 s: without draining, the stop waits 5 s and the
    # lease is cut off without an answer.
    assert stopped_in < 3, stopped_in
    assert answers["lease"] == (200, {"events": [], "queue_depth": answers["lease"][1]["queue_depth"]})
    assert answers["stream"][0] == ": connected"
