"""The admin API with hostile bodies and paths; webhook URLs, private hosts and ports checked when they are set."""

from __future__ import annotations

import httpx
import pytest

from insane.devkit.client import admin_headers, make_tenant
from insane.devkit.relay import RelayServer


def admin(relay: RelayServer, method: str, path: str, headers: dict | None = None, **kwargs) -> httpx.Response:
    headers = {**admin_headers(), **(headers or {})}
    return httpx.request(method, f"{relay.url}/admin{path}", headers=headers, timeout=30, **kwargs)


def problem(r: httpx.Response, status: int, slug: str, words: str = "") -> bool:
    return (
        r.status_code == status
        and r.headers["content-type"] == "application/problem+json"
        and r.json()["type"] == f"/problems/{slug}"
        and words in r.json()["detail"]
    )


@pytest.mark.parametrize(
    ("method", "path", "raw", "status", "slug"),
    [
        ("POST", "/tenants", b'{"name": "a\\u0000b"}', 422, "invalid-body"),  # PostgreSQL text: a 500
        ("POST", "/tenants", b'{"name": "\\ud800"}', 422, "invalid-body"),  # json.loads took it: a 500
        ("POST", "/tenants", b'{"name": "x", "tier": 5}', 422, "invalid-body"),
        ("POST", "/tenants", b'{"name": "x", "extra": 1}', 422, "invalid-body"),
        ("POST", "/tenants", b"[1]", 422, "invalid-body"),
        ("POST", "/tenants", b"{nope", 422, "invalid-body"),
        ("POST", "/enroll-codes", b'{"tenant": "\\u0000"}', 422, "invalid-body"),
        ("POST", "/enroll-codes", b'{"ttl_s": 1e400}', 422, "invalid-body"),
        ("POST", "/enroll-codes", b'{"ttl_s": 600.0}', 422, "invalid-body"),
        ("POST", "/tenants/a%00b/keys", b"", 404, "not-found"),  # a NUL in the path: a 500
        ("DELETE", "/keys/a%00b", b"", 404, "not-found"),
        ("DELETE", "/keys/%ED%A0%80", b"", 404, "not-found"),
        ("PUT", "/tenants/a%00b/tier", b'{"tier": "pro"}', 404, "not-found"),
    ],
)
def test_hostile_bodies_and_paths_get_a_4xx(
    relay: RelayServer, method: str, path: str, raw: bytes, status: int, slug: str
) -> None:
    r = admin(relay, method, path, content=raw, headers={"content-type": "application/json"})
    assert problem(r, status, slug), r.text


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://0177.0.0.1:8080/hook", "not a valid URL"),  # httpx's InvalidURL killed the sender for everyone
        ("http://[::1/hook", "not a valid URL"),
        ("http://169.254.169.254/hook", "link-local"),
        ("http://10.1.2.3/hook", "private"),
        ("https://hooks.example.com:25/hook", "port 25 is not allowed"),
        ("https://user:pw@hooks.example.com/hook", "credentials"),
        ("ftp://hooks.example.com/hook", "http(s)"),
        ("https://hooks.example.com/" + "a" * 2100, "2048"),
    ],
)
def test_a_webhook_url_delivery_would_refuse_is_refused_when_set(relay: RelayServer, url: str, words: str) -> None:
    tenant = make_tenant(relay.url)
    r = admin(relay, "PUT", f"/tenants/{tenant.id}/webhook", json={"url": url})
    assert r.status_code == 422 and r.json()["type"] == "/problems/invalid-body", r.text
    assert words in r.json()["detail"]
    listed = {t["id"]: t for t in admin(relay, "GET", "/tenants").json()["tenants"]}
    assert listed[tenant.id]["webhook_url"] is None


def test_a_tenants_ports_open_its_webhook_port(relay: RelayServer) -> None:
    tenant = make_tenant(relay.url)
    hook = {"url": "https://hooks.example.com:8443/hook"}  # public names pass; delivery resolves them
    assert admin(relay, "PUT", f"/tenants/{tenant.id}/webhook", json=hook).status_code == 200
    odd = {"url": "https://hooks.example.com:7443/hook"}
    assert admin(relay, "PUT", f"/tenants/{tenant.id}/webhook", json=odd).status_code == 422
    ports = admin(relay, "PUT", f"/tenants/{tenant.id}/ports", json={"ports": [7443, 7443, 81]})
    assert ports.status_code == 200 and ports.json() == {"ports": [81, 7443]}
    assert admin(relay, "PUT", f"/tenants/{tenant.id}/webhook", json=odd).status_code == 200
    listed = {t["id"]: t for t in admin(relay, "GET", "/tenants").json()["tenants"]}
    assert listed[tenant.id]["allow_ports"] == [81, 7443] and listed[tenant.id]["webhook_url"] == odd["url"]


@pytest.mark.parametrize("ports", [[0], [65536], [-1], [True], ["80"], [1.5], list(range(1000, 1065))])
def test_ports_out_of_range_are_refused(relay: RelayServer, ports: list) -> None:
    tenant = make_tenant(relay.url)
    assert problem(admin(relay, "PUT", f"/tenants/{tenant.id}/ports", json={"ports": ports}), 422, "invalid-body")


def test_private_hosts_are_host_names_or_addresses(relay: RelayServer) -> None:
    tenant = make_tenant(relay.url)
    path = f"/tenants/{tenant.id}/private-hosts"
    ok = admin(relay, "PUT", path, json={"hosts": ["NVR.lan.", "[FD00::1]", "0x7f.1", "192.168.1.20"]})
    assert ok.status_code == 200 and ok.json() == {"hosts": ["nvr.lan", "fd00::1", "127.0.0.1", "192.168.1.20"]}
    for bad in ["http://nvr.lan/", "nvr lan", "1.2.3.4.5", "[zz::1]", "a/b", "..", "nvr.lan:5000"]:
        r = admin(relay, "PUT", path, json={"hosts": [bad]})
        assert problem(r, 422, "invalid-body", "private hosts"), (bad, r.text)
