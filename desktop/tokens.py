"""The worker token, kept in the system keyring (never in a plain file), one per relay URL.

store = TokenStore()
store.save("https://relay.example", token)
store.load("https://relay.example")      # -> str | None
store.forget("https://relay.example")
"""

from __future__ import annotations

import logging

import keyring
from keyring.errors import KeyringError, NoKeyringError, PasswordDeleteError

log = logging.getLogger(__name__)

SERVICE = "insane-ai-security"


class TokenStoreError(Exception):
    """The keyring refused; ``str()`` is a sentence for the user."""


def _account(relay_url: str) -> str:
    # The relay URL is the account name, so a PC enrolled with two relays keeps both tokens.
    return "worker-token:" + relay_url.rstrip("/")


class TokenStore:
    def __init__(self, service: str = SERVICE) -> None:
        self.service = service

    def load(self, relay_url: str) -> str | None:
        try:
            return keyring.get_password(self.service, _account(relay_url))
        except NoKeyringError as exc:
            raise TokenStoreError(_NO_KEYRING) from exc
        except KeyringError as exc:
            raise TokenStoreError(f"the system keyring could not be read: {exc}") from exc

    def save(self, relay_url: str, token: str) -> None:
        if not token:
            raise ValueError("an empty token is not a token")
        try:
            keyring.set_password(self.service, _account(relay_url), token)
        except NoKeyringError as exc:
            raise TokenStoreError(_NO_KEYRING) from exc
        except KeyringError as exc:
            raise TokenStoreError(f"the system keyring refused to store the worker token: {exc}") from exc
        log.info("worker token stored in the keyring for %s", relay_url)

    def forget(self, relay_url: str) -> None:
        try:
            keyring.delete_password(self.service, _account(relay_url))
        except PasswordDeleteError:
            return  # nothing stored: already forgotten
        except NoKeyringError as exc:
            raise TokenStoreError(_NO_KEYRING) from exc
        except KeyringError as exc:
            raise TokenStoreError(f"the system keyring could not remove the worker token: {exc}") from exc


_NO_KEYRING = (
    "no system keyring is available to keep the worker token safely "
    "(on Linux, install and unlock GNOME Keyring or KWallet)"
)
