"""A client that leaves in the middle of its body is no error of the relay's: nothing logged as one."""

from __future__ import annotations

import logging
import socket
import time
from urllib.parse import urlsplit

from insane.devkit.client import enroll_worker
from insane.devkit.relay import RelayServer


def test_a_body_cut_short_is_not_an_unhandled_error(relay: RelayServer, caplog) -> None:
    worker = enroll_worker(relay.url)
    url = urlsplit(relay.url)
    caplog.set_level(logging.DEBUG, logger="relay.app")
    for path in ("/v1/worker/lease", "/v1/events"):
        with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
            sock.sendall(
                f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {worker.secret}\r\n"
                'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"max_events"'.encode()
            )
        time.sleep(0.5)  # the relay reads on, finds the client gone
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]
    assert any("left before its body arrived" in r.getMessage() for r in caplog.records)
