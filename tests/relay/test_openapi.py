"""/openapi.json is the contract: schemathesis drives every operation, with hostile values where they hurt.

Plain schema-valid data found none of the 500s a black-box probe found, so the fuzz adds what an attacker
sends: URLs (broken IPv6 literals, odd ports, numeric hosts, credentials), times at the ends of datetime's
range with offsets, NaN/Infinity/huge numbers in JSON, Unicode digits in integer parameters, NUL and lone
surrogates in text, and real ids (a tenant, an event) so requests reach the code behind the lookups. Every
route runs, the worker API with a real worker token and the admin API with the admin token. Hypothesis is
derandomised: the same cases every run, so CI is stable and a failure reproduces.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi import formats

from core.protocol import LANES
from insane.devkit.client import ADMIN_TOKEN, enroll_worker, event_body, make_tenant
from insane.devkit.relay import RelayServer
from relay import openapi
from relay.problems import TYPE_BASE, TYPES
from relay.views import STATUSES, EventAccepted, EventList, EventView, OwnWorkers
from tests.relay.hostile import (
    DIGITS,
    PATH_IDS,
    QUERIES,
    SEEDS,
    STRATEGIES,
    VOCABULARY,
    Known,
    kind_of,
    leaves,
    replace,
)

SKIP = {"/v1/events/stream"}  # an endless SSE response; covered by the worker tests
EXAMPLES = {True: 40, False: 4}  # per operation: authenticated, anonymous (refused before anything is read)
PATH_VALUES = ["%00", "%ED%A0%80", "a%2Fb", "..", "x" * 300, "%F0%9F%92%A9"]  # sent as written (raw escapes)
KIND_ORDER = ["float", "time", "url", "metric", "int", "text"]
QUERY_VALUES = {"limit": [*DIGITS, "0", "201", "nan", "1e999"], "cursor": ["", "!!", "%00", "x" * 500]}
VISION = ("/v1/vision/", "/v1/server/")


@pytest.fixture(scope="module", autouse=True)
def hostile_formats() -> Iterator[None]:
    """Schemathesis generates ``format: uri`` and ``format: date-time`` strings from the hostile strategies."""
    saved = {name: formats.STRING_FORMATS.get(name) for name in ("uri", "date-time")}
    valid_time = st.datetimes(timezones=st.just(UTC)).map(datetime.isoformat)
    schemathesis.openapi.format("uri", st.one_of(STRATEGIES["url"], st.just("https://cam.example.com/a.jpg")))
    schemathesis.openapi.format("date-time", st.one_of(STRATEGIES["time"], valid_time))
    yield
    for name, strategy in saved.items():
        if strategy is None:
            formats.unregister_string_format(name)
        else:
            schemathesis.openapi.format(name, strategy)


@pytest.fixture(scope="module")
def creds(relay: RelayServer) -> dict[str, Any]:
    # guardian: no token bucket, so the sweep's many posts reach the store instead of a 429
    tenant, worker = make_tenant(relay.url), enroll_worker(relay.url)
    posted = [httpx.post(f"{relay.url}/v1/events", json=event_body(2), headers=tenant.headers) for _ in range(3)]
    assert all(r.status_code == 202 for r in posted)
    return {
        "tenant": tenant,
        "worker": worker,
        "admin": {"Authorization": f"Bearer {ADMIN_TOKEN}"},
        "known": Known(tenant.id, [r.json()["id"] for r in posted]),
    }


def _auth(path: str, creds: dict[str, Any]) -> dict[str, str]:
    if path.startswith("/admin"):
        return creds["admin"]
    return creds["worker"].headers if path.startswith("/v1/worker") else creds["tenant"].headers


def _encode_cursor(at: str) -> str:
    return base64.urlsafe_b64encode(f"{at}|{uuid.uuid4()}".encode()).decode()


@dataclass
class Hostile:
    """A schemathesis case and what the fuzz changed: a JSON body sent as raw bytes (it may hold NaN or lone
    surrogates, which schemathesis's own validation of a case cannot encode), query values, path ids."""

    case: Any
    content: bytes | None = None

    def send(self, client: httpx.Client, headers: dict[str, str]) -> Any:
        case = self.case
        merged = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"} | headers
        if self.content is None:
            return case.call(base_url=str(client.base_url), headers=merged, timeout=30)
        merged["content-type"] = "application/json"
        return client.request(case.method, case.formatted_path, params=case.query, headers=merged, content=self.content)


@st.composite
def _mutated(draw, body: Any) -> Any:
    """``body`` with one scalar replaced by a hostile value of its kind (or, for a dict of numbers, one added)."""
    by_kind: dict[str, list[tuple]] = {}
    for path, value in leaves(body):
        kind = kind_of(value)
        if kind is not None:
            by_kind.setdefault(kind, []).append(path)
    if isinstance(body, dict) and isinstance(body.get("metrics"), dict):
        by_kind.setdefault("metric", [()])
    if not by_kind:
        return body
    kind = draw(st.sampled_from(sorted(by_kind, key=KIND_ORDER.index)))  # the kinds behind 500s first
    if kind == "metric":
        return {**body, "metrics": {**body["metrics"], "m": draw(STRATEGIES["float"])}}
    return replace(body, draw(st.sampled_from(by_kind[kind])), draw(STRATEGIES[kind]))


@st.composite
def hostile_case(draw, operation, known: Known) -> Hostile:
    case = draw(operation.as_strategy())
    out = Hostile(case)
    key = (operation.method.upper(), operation.path)
    body = case.body
    multipart = isinstance(body, dict) and "moment" in body
    if key in SEEDS and not multipart and draw(st.integers(0, 3)) > 0:
        body = SEEDS[key](known)  # valid but for one value: the mutation reaches the code behind validation
    if isinstance(body, dict | list) and not multipart:
        body = draw(_mutated(body))
        if operation.path == "/v1/worker/lease" and isinstance(body, dict):
            body = {**body, "wait_s": 0}  # keep the long-poll short
        out.content = json.dumps(body).encode()  # NaN and Infinity as Python writes them; surrogates escaped
    if case.query:
        for name in list(case.query):
            if name == "limit" and draw(st.booleans()):
                case.query[name] = draw(STRATEGIES["digits"])
            elif name == "cursor" and draw(st.booleans()):
                case.query[name] = _encode_cursor(draw(STRATEGIES["time"]))
    for name, real in PATH_IDS.items():
        if case.path_parameters and name in case.path_parameters and draw(st.booleans()):
            case.path_parameters[name] = real(known)
    return out


def _media(response: Any) -> str:
    ctype = response.headers.get("content-type")
    return ctype[0] if isinstance(ctype, list) else ctype  # schemathesis: a list


def _check(where: str, response: Any, failures: list[str]) -> None:
    """No 5xx; every 4xx is problem+json with a registered /problems/ type."""
    if response.status_code >= 500:
        failures.append(f"{where}: {response.status_code} {response.text[:300]}")
    elif response.status_code >= 400 and any(v in where for v in VISION) and _media(response) == "application/json":
        # The DeepStack API answers in its own form, as its clients expect: {success: false, error}. (A path
        # that no route matches gets the relay's own 404 problem, checked below.)
        body = json.loads(response.text)
        if body.get("success") is not False or not body.get("error"):
            failures.append(f"{where}: {response.status_code} is not a DeepStack error")
    elif response.status_code >= 400:
        if _media(response) != "application/problem+json":
            failures.append(f"{where}: {response.status_code} is not problem+json")
            return
        kind = json.loads(response.text).get("type", "")
        if not kind.startswith(TYPE_BASE) or kind.removeprefix(TYPE_BASE) not in TYPES:
            failures.append(f"{where}: problem type {kind!r} is not a registered /problems/ path")


def _where(hostile: Hostile) -> str:
    case = hostile.case
    body = hostile.content if hostile.content is not None else case.body
    return f"{case.method.upper()} {case.formatted_path} query={case.query!r} body={body!r:.300}"


def _fuzz(client: httpx.Client, operation, headers: dict[str, str], known: Known, examples: int, failures: list[str]):
    made = 0

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(hostile=hostile_case(operation, known))
    def run(hostile: Hostile) -> None:
        nonlocal made
        made += 1
        try:
            response = hostile.send(client, headers)
        except (httpx.TransportError, OSError) as exc:  # the relay dropped the connection: worse than a 500
            failures.append(f"{_where(hostile)}: no answer ({exc!r})")
            return
        _check(_where(hostile), response, failures)

    run()
    return made


@pytest.mark.parametrize("authenticated", [True, False], ids=["auth", "anonymous"])
def test_no_server_errors_anywhere(relay: RelayServer, creds: dict[str, Any], authenticated: bool) -> None:
    schema = schemathesis.openapi.from_url(f"{relay.url}/openapi.json")
    failures: list[str] = []
    checked, paths = 0, set()
    with httpx.Client(base_url=relay.url, timeout=30) as client:
        for result in schema.get_all_operations():
            operation = result.ok()
            if operation.path in SKIP:
                continue
            paths.add(operation.path)
            headers = _auth(operation.path, creds) if authenticated else {}
            checked += _fuzz(client, operation, headers, creds["known"], EXAMPLES[authenticated], failures)
    routes = {route.path for route in relay.app.routes} - SKIP - {"/openapi.json"}
    assert paths == routes  # every route, the worker and admin APIs included
    assert checked >= len(paths) * EXAMPLES[authenticated] * 0.8
    assert not failures, "\n".join(failures[:30])


def _variants(method: str, path: str, known: Known) -> Iterator[tuple[str, dict[str, Any]]]:
    """The valid request of an operation, then each hostile value of its kind in each of its fields."""
    ids = {name: real(known) for name, real in PATH_IDS.items() if "{" + name + "}" in path}
    body = SEEDS[(method, path)](known) if (method, path) in SEEDS else None
    query = QUERIES[(method, path)](known) if (method, path) in QUERIES else {}

    def request(url: str = path.format(**ids), json_body: Any = body, params: dict | None = None) -> dict[str, Any]:
        return {"url": url, "json": json_body, "query": query if params is None else params}

    yield "valid", request()
    for where, value in leaves(body) if body is not None else ():
        for hostile in VOCABULARY.get(kind_of(value) or "", []):
            yield f"body{list(where)}={hostile!r:.40}", request(json_body=replace(body, where, hostile))
    for name, value in query.items():
        values = [*QUERY_VALUES.get(name, []), *VOCABULARY.get(kind_of(value) or "", []), "\0", "a\0b"]
        for hostile in values:
            if isinstance(hostile, str) and any(0xD800 <= ord(c) <= 0xDFFF for c in hostile):
                continue  # a lone surrogate cannot travel in a URL
            yield f"query {name}={hostile!r:.40}", request(params={**query, name: hostile})
    if (method, path) in QUERIES:
        for at in VOCABULARY["time"]:
            yield f"query cursor at {at}", request(params={**query, "cursor": _encode_cursor(at)})
    for name in ids:
        for hostile in PATH_VALUES:
            url = path.replace("{" + name + "}", hostile).format(**ids)
            yield f"path {name}={hostile}", request(url=url)


def test_every_hostile_value_in_every_field_gets_a_4xx(relay: RelayServer, creds: dict[str, Any]) -> None:
    """The sweep: each operation's valid request with one field at a time set to each hostile value of its kind
    (URLs, times, numbers, text; Unicode digits and cursors in queries; escapes in paths). Deterministic, and
    every value reaches the code behind validation, where the fuzz might take many examples to get."""
    doc = httpx.get(f"{relay.url}/openapi.json").json()
    failures: list[str] = []
    sent = 0
    with httpx.Client(base_url=relay.url, timeout=30) as client:
        for path, ops in doc["paths"].items():
            for method in ops:
                if path in SKIP or path.startswith("/problems"):
                    continue
                for label, request in _variants(method.upper(), path, creds["known"]):
                    content = json.dumps(request["json"]).encode() if request["json"] is not None else None
                    headers = {**_auth(path, creds), "content-type": "application/json"}
                    sent += 1
                    try:
                        response = client.request(
                            method.upper(), request["url"], params=request["query"], content=content, headers=headers
                        )
                    except httpx.TransportError as exc:  # the relay dropped the connection: worse than a 500
                        failures.append(f"{method.upper()} {path} {label}: no answer ({exc!r})")
                        continue
                    _check(f"{method.upper()} {path} {label}", response, failures)
    assert sent > 500
    assert not failures, "\n".join(failures[:30])


def test_document_lists_every_route(relay: RelayServer) -> None:
    doc = httpx.get(f"{relay.url}/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    routes = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    for route in relay.app.routes:
        if route.path == "/openapi.json":
            continue
        for method in route.methods - {"HEAD"}:
            assert (route.path, method) in routes, (route.path, method)


def test_every_schema_the_document_names_is_generated_from_a_model() -> None:
    doc = openapi.build()
    named = set(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(doc)))
    assert named and named <= set(doc["components"]["schemas"])
    summary = doc["components"]["schemas"]["EventSummary"]["properties"]
    assert summary["lane"]["enum"] == list(LANES) and summary["status"]["enum"] == list(STATUSES)


def test_the_events_api_answers_exactly_what_its_models_document(relay: RelayServer) -> None:
    tenant = make_tenant(relay.url)
    body, key = event_body(2), {"Idempotency-Key": uuid.uuid4().hex}
    posted = httpx.post(f"{relay.url}/v1/events", json=body, headers=tenant.headers | key)
    replayed = httpx.post(f"{relay.url}/v1/events", json=body, headers=tenant.headers | key)
    event_id = posted.json()["id"]
    answers = [
        (EventAccepted, posted, set()),
        (EventAccepted, replayed, {"waiting_for"}),  # a replay leaves it out
        (EventView, httpx.get(f"{relay.url}/v1/events/{event_id}", headers=tenant.headers), set()),
        (EventList, httpx.get(f"{relay.url}/v1/events", headers=tenant.headers), set()),
        (OwnWorkers, httpx.get(f"{relay.url}/v1/workers", headers=tenant.headers), set()),
    ]
    assert [r.status_code for _, r, _ in answers] == [202, 200, 200, 200, 200]
    for model, answer, left_out in answers:
        got = answer.json()
        assert model.model_validate(got).model_dump(mode="json", exclude=left_out) == got
    assert answers[2][1].json()["queue"]["routing"] == "shared"  # queued: where it waits is part of the view
