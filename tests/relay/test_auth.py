"""API keys and worker tokens: parsing, and the credential cache a flood of random key ids cannot empty."""

from __future__ import annotations

import secrets

import httpx
import pytest

from insane.devkit.client import event_body, make_tenant
from insane.devkit.relay import RelayServer
from relay.auth import CredentialCache, LRUCache, parse_secret
from relay.problems import Problem


def test_lru_evicts_the_least_recently_used_one_at_a_time() -> None:
    cache = LRUCache(ttl=60, size=3)
    for key in "abc":
        cache.put(key, key.upper())
    assert cache.get("a") == "A"  # a is now the most recent
    cache.put("d", "D")
    assert (cache.get("b"), cache.get("a"), cache.get("c"), cache.get("d")) == (None, "A", "C", "D")
    assert len(cache) == 3


def test_expired_entries_are_misses_but_stay_for_stale_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr("relay.auth.time.monotonic", lambda: now[0])
    cache = LRUCache(ttl=5, size=10)
    cache.put("k", "v")
    now[0] += 6
    assert cache.get("k") is None and cache.get("k", stale=True) == "v"
    assert LRUCache(ttl=0, size=10).get("k") is None  # ttl 0: nothing is kept


def test_a_flood_of_unknown_ids_never_evicts_a_known_key() -> None:
    cache = CredentialCache(ttl=60, size=100, miss_size=10)
    cache.put("known", ("digest", "tenant"), found=True)
    for _ in range(10_000):
        cache.put(secrets.token_hex(8), (None, None), found=False)
    assert cache.get("known") == ("digest", "tenant")
    assert len(cache.found) == 1 and len(cache.missing) == 10
    cache.put("revoked", (None, "tenant"), found=False)
    assert cache.get("revoked") == (None, "tenant")  # a client retrying a dead key is answered from memory


@pytest.mark.parametrize(
    "token", ["ik_\u00e9\u00e9_" + "x" * 40, "ik_a b_" + "x" * 40, "ik_" + "a" * 65 + "_" + "x" * 40]
)
def test_key_ids_outside_the_alphabet_are_malformed(token: str) -> None:
    with pytest.raises(Problem) as refused:
        parse_secret("ik", f"Bearer {token}")
    assert refused.value.status == 401 and refused.value.detail == "malformed credentials"


def test_random_key_ids_stay_out_of_the_known_keys(relay: RelayServer) -> None:
    tenant = make_tenant(relay.url)
    url = f"{relay.url}/v1/events"
    assert httpx.post(url, json=event_body(1), headers=tenant.headers).status_code == 202
    keys = relay.state.keys
    known_id = tenant.secret.split("_")[1]
    assert keys.found.get(known_id) is not None
    found_before = len(keys.found)
    with httpx.Client(timeout=30) as client:
        for _ in range(50):
            bogus = {"Authorization": f"Bearer ik_{secrets.token_hex(8)}_{secrets.token_urlsafe(32)}"}
            assert client.post(url, json=event_body(1), headers=bogus).status_code == 401
    assert len(keys.found) == found_before and keys.found.get(known_id) is not None
    assert len(keys.missing) >= 50
    assert httpx.post(url, json=event_body(1), headers=tenant.headers).status_code == 202
