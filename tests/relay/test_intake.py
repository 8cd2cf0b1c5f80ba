"""POST /v1/events refuses what it cannot store or no worker would fetch, with a precise 422, never a 500."""

from __future__ import annotations

import httpx
import pytest

from insane.devkit.client import admin_headers, event_body, make_tenant
from insane.devkit.relay import RelayServer


def post(relay: RelayServer, tenant, **body) -> httpx.Response:
    return httpx.post(f"{relay.url}/v1/events", json=event_body(1, **body), headers=tenant.headers, timeout=30)


def refused(r: httpx.Response, slug: str, *words: str) -> bool:
    problem = r.json()
    return (
        r.status_code == 422
        and r.headers["content-type"] == "application/problem+json"
        and problem["type"] == f"/problems/{slug}"
        and all(w in problem["detail"] for w in words)
    )


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://[::1/x.jpg", "not a valid URL"),  # urlsplit raised ValueError: a 500
        ("http://[abc]/x.jpg", "not a valid URL"),
        ("http://[::1]]/x.jpg", "not a valid URL"),
        ("http://a\uff03b/x.jpg", "not a valid URL"),  # NFKC turns the fullwidth '#' into a netloc delimiter
        ("http://x:99999/a.jpg", "out of range"),
        ("http://0177.0.0.1/x.jpg", "not a valid URL"),
        ("http://user:pw@cam.example.com/x.jpg", "credentials"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://[::ffff:127.0.0.1]/x.jpg", "IPv4-mapped"),
        ("http://cam.example.com:25/x.jpg", "port 25 is not allowed"),
    ],
)
def test_a_moment_url_no_worker_would_fetch_gets_a_precise_422(relay: RelayServer, url: str, words: str) -> None:
    tenant = make_tenant(relay.url)
    r = post(relay, tenant, moments=["https://cam.example.com/ok.jpg", url])
    assert refused(r, "invalid-url", "moments[1]:", words), r.text


def test_the_tenants_allow_lists_open_ports_and_private_hosts(relay: RelayServer) -> None:
    tenant = make_tenant(relay.url)
    camera = "http://cam.example.com:5000/snap.jpg"
    lan = "http://192.168.1.20:81/snap.jpg"
    assert refused(post(relay, tenant, moments=[camera]), "invalid-url", "port 5000")
    assert refused(post(relay, tenant, moments=[lan]), "invalid-url", "192.168.1.20 is private")
    admin = f"{relay.url}/admin/tenants/{tenant.id}"
    assert httpx.put(f"{admin}/ports", json={"ports": [5000]}, headers=admin_headers()).status_code == 200
    assert httpx.put(f"{admin}/private-hosts", json={"hosts": ["192.168.1.20"]}, headers=admin_headers()).is_success
    # The admin API forgets cached credentials, so the next post sees the new lists.
    assert post(relay, tenant, moments=[camera]).status_code == 202
    assert post(relay, tenant, moments=[lan]).status_code == 202  # any port on an allow-listed private host
    assert post(relay, tenant, moments=["http://cam.example.com:5001/x.jpg"]).status_code == 422


@pytest.mark.parametrize(
    "time", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "0001-01-01T13:59:59+14:00"]
)
def test_a_time_outside_the_range_once_in_utc_gets_a_422(relay: RelayServer, time: str) -> None:
    tenant = make_tenant(relay.url)
    r = post(relay, tenant, time=time)
    assert refused(r, "invalid-event", "time:", "out of range"), r.text


@pytest.mark.parametrize("time", ["0001-01-01T00:00:00Z", "0001-01-01T14:00:00+14:00", "9999-12-31T09:59:59-14:00"])
def test_the_extreme_times_that_fit_are_stored(relay: RelayServer, time: str) -> None:
    """A camera with an unset clock (Go's zero time, year 1) still gets its event reviewed."""
    tenant = make_tenant(relay.url)
    assert post(relay, tenant, time=time).status_code == 202


def test_a_time_without_a_zone_is_refused(relay: RelayServer) -> None:
    tenant = make_tenant(relay.url)
    assert refused(post(relay, tenant, time="2024-01-01T00:00:00"), "invalid-event", "give a time zone")
