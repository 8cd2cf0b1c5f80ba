"""The worker token goes to the keyring, one per relay URL, and never to the config file."""

from __future__ import annotations

import keyring
import pytest
from keyring.backends.fail import Keyring as FailKeyring

from desktop.tokens import SERVICE, TokenStore, TokenStoreError
from tests.desktop.memory_keyring import MemoryKeyring


def test_round_trip_per_relay(memory_keyring: MemoryKeyring) -> None:
    store = TokenStore()
    assert store.load("https://a.example") is None
    store.save("https://a.example/", "tok-a")
    store.save("https://b.example", "tok-b")
    assert store.load("https://a.example") == "tok-a"  # the trailing slash does not matter
    assert store.load("https://b.example") == "tok-b"
    assert (SERVICE, "worker-token:https://a.example") in memory_keyring.secrets
    store.forget("https://a.example")
    assert store.load("https://a.example") is None
    store.forget("https://a.example")  # twice: no error


def test_no_keyring_is_a_sentence_for_the_user() -> None:
    previous = keyring.get_keyring()
    keyring.set_keyring(FailKeyring())
    try:
        with pytest.raises(TokenStoreError, match="no system keyring is available"):
            TokenStore().save("https://a.example", "tok")
        with pytest.raises(TokenStoreError):
            TokenStore().load("https://a.example")
    finally:
        keyring.set_keyring(previous)


def test_empty_token_is_refused(memory_keyring: MemoryKeyring) -> None:
    with pytest.raises(ValueError):
        TokenStore().save("https://a.example", "")
