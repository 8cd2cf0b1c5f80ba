"""Where a client's key comes from: the form field, a Bearer header, or HTTP Basic from a URL."""

from __future__ import annotations

import base64

from core.lan.form import VisionForm, credential


def form(api_key: str | None = None) -> VisionForm:
    return VisionForm(b"jpeg", None, None, api_key)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_the_form_field_wins_then_bearer_then_basic() -> None:
    assert credential(form("k1"), "Bearer k2") == "k1"
    assert credential(form(""), "Bearer k2") == "k2"
    assert credential(form(None), "bearer  k2 ") == "k2"
    assert credential(form(None), basic("key", "k3")) == "k3"  # http://key:k3@host/
    assert credential(form(None), basic("k4", "")) == "k4"  # http://k4:@host/


def test_nothing_usable_is_no_key() -> None:
    assert credential(form(None), None) is None
    assert credential(form(None), "Bearer ") is None
    assert credential(form(None), "Basic !!!not-base64") is None
    assert credential(form(None), "Digest abc") is None
    assert credential(form(None), basic("", "")) is None
