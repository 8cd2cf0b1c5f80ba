"""Query parameters of GET /v1/events: only what PostgreSQL can be given passes; the rest is a precise 400."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime

import httpx
import pytest

from insane.devkit.client import event_body, make_tenant
from insane.devkit.relay import RelayServer
from relay.params import ascii_number, decode_cursor, encode_cursor
from relay.problems import Problem


def listing(relay: RelayServer, tenant, **params: str) -> httpx.Response:
    return httpx.get(f"{relay.url}/v1/events", params=params, headers=tenant.headers, timeout=30)


def cursor_at(at: str) -> str:
    return base64.urlsafe_b64encode(f"{at}|{uuid.uuid4()}".encode()).decode()


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"limit": "²"}, "limit: a whole number from 1 to 200"),  # isdigit() said yes, int() raised: a 500
        ({"limit": "١٢"}, "limit"),  # int() reads Arabic-Indic digits: refused all the same, ASCII only
        ({"limit": "１２"}, "limit"),
        ({"limit": "+5"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"since": "0001-01-01T00:00:00+14:00"}, "since: out of range"),  # asyncpg overflowed at UTC: a 500
        ({"until": "9999-12-31T23:59:59-14:00"}, "until: out of range"),
        ({"since": "yesterday"}, "since: an ISO 8601 time"),
        ({"cursor": cursor_at("0001-01-01T00:00:00+14:00")}, "cursor"),
        ({"cursor": cursor_at("9999-12-31T23:59:59-14:00")}, "cursor"),
        ({"cursor": "!!"}, "cursor"),
        ({"camera": "a\0b"}, "camera"),
        ({"status": "nope"}, "status"),
    ],
)
def test_hostile_query_parameters_get_a_precise_400(relay: RelayServer, params: dict, words: str) -> None:
    tenant = make_tenant(relay.url)
    r = listing(relay, tenant, **params)
    assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json", r.text
    assert r.json()["type"] == "/problems/invalid-query" and words in r.json()["detail"]


def test_times_at_the_edges_that_fit_still_filter(relay: RelayServer) -> None:
    tenant = make_tenant(relay.url)
    assert httpx.post(f"{relay.url}/v1/events", json=event_body(1), headers=tenant.headers).status_code == 202
    everything = listing(relay, tenant, since="0001-01-01T00:00:00Z", until="9999-12-31T23:59:59Z", limit="200")
    assert everything.status_code == 200 and len(everything.json()["events"]) == 1
    naive = listing(relay, tenant, since="2000-01-01T00:00:00")  # no zone: UTC
    assert naive.status_code == 200 and len(naive.json()["events"]) == 1


def test_cursor_round_trip_and_ascii_numbers() -> None:
    at, ident = datetime(2026, 1, 2, 3, 4, 5, 6789, tzinfo=UTC), uuid.uuid4()
    assert decode_cursor(encode_cursor(at, ident)) == (at, ident)
    assert decode_cursor(None) is None
    with pytest.raises(Problem):
        decode_cursor(cursor_at("0001-01-01T00:00:00+14:00"))
    assert ascii_number("42") == 42
    assert [ascii_number(s) for s in ("²", "١٢", "", " 1", "1.0", None, "9" * 19)] == [None] * 7
