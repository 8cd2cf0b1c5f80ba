"""What an attacker sends the relay, by kind of value, and a valid request per operation to send it in.

    kind_of(value)                  # "url" | "time" | "float" | "int" | "text" | None: which vocabulary replaces it
    VOCABULARY["time"]              # fixed hostile values of that kind (the sweep sends every one)
    STRATEGIES["time"]              # a Hypothesis strategy of that kind (the fuzz draws from it)
    seed = SEEDS[("POST", "/v1/events")](known)   # a body that passes validation, so a mutation reaches deep

A hostile value in an otherwise valid request gets past the first check and reaches the code that stores or
uses it: that is where the 500s were (PostgreSQL refusing NaN in jsonb, asyncpg overflowing a time at UTC).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

from insane.devkit.client import event_body

BROKEN_URLS = [
    "http://[::1/x.jpg",
    "http://[abc]/x.jpg",
    "http://[::1]]/x.jpg",
    "http://[127.0.0.1]/x.jpg",
    "http://[fe80::1%25eth0]/x.jpg",
    "http://x:99999/a.jpg",
    "http://x:0/a.jpg",
    "http://x:-1/a.jpg",
    "http://x:8o/a.jpg",
    "http://0177.0.0.1:8080/hook",
    "http://0x7f.1/x.jpg",
    "http://2130706433/x.jpg",
    "http://169.254.169.254/latest/meta-data",
    "http://user:pw@cam.example.com/x.jpg",
    "http://a\uff03b/x.jpg",
    "http://xn--/x.jpg",
    "http://./x.jpg",
    "http://cam.example.com:25/x.jpg",
    "http:///x.jpg",
    "http:\\\\cam.example.com\\x.jpg",
    "ftp://cam.example.com/x.jpg",
    "javascript:alert(1)",
    "",
]
EDGE_TIMES = [
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00",
    "0001-01-01T13:59:59+14:00",
    "9999-12-31T10:00:01-13:59",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999999Z",
    "2024-02-30T00:00:00Z",
    "2024-01-01T24:00:00Z",
    "2024-01-01T00:00:00",
    "2024-01-01",
]
FLOATS = [math.nan, math.inf, -math.inf, -0.0, 1e308, -1e308, 5e-324]
INTS = [2**63, -(2**63), 10**30, -1, 2**31]
DIGITS = ["²", "١٢", "１２", "0x10", "1_0", " 5", "+5", "-1", "1e2", "5.0", "9" * 25, ""]
TEXT = ["\0", "a\0b", "\ud800", "\udfff", "\u202e", "\ufeff", "x" * 5000, " ", "%00", "../.."]
VOCABULARY: dict[str, list[Any]] = {
    "url": BROKEN_URLS,
    "time": EDGE_TIMES,
    "float": [*FLOATS, *INTS],
    "int": [*INTS, *FLOATS],
    "text": TEXT,
}

_HOSTS = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda ip: f"[{ip}]"),
    st.ip_addresses(v=6).map(lambda ip: f"[{str(ip)[:-1]}"),  # a literal that lost its bracket or a digit
    st.sampled_from(["cam.example.com", "localhost", "127.1", "0x7f000001", "[::ffff:127.0.0.1]", "nvr.lan"]),
    st.text(min_size=1, max_size=12),
)
_PORTS = st.one_of(st.just(""), st.integers(-2, 70_000).map(":{}".format), st.text(max_size=4).map(":{}".format))
_SCHEMES = st.sampled_from(["http", "https", "HTTP", "ftp"])
_ZONED = st.builds(
    lambda at, minutes: at.replace(tzinfo=timezone(timedelta(minutes=minutes))).isoformat(),
    st.datetimes(),
    st.integers(-14 * 60 + 1, 14 * 60 - 1),
)
STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    "url": st.one_of(
        st.sampled_from(BROKEN_URLS), st.builds("{}://{}{}/{}.jpg".format, _SCHEMES, _HOSTS, _PORTS, st.text())
    ),
    "time": st.one_of(st.sampled_from(EDGE_TIMES), _ZONED),
    "float": st.sampled_from(FLOATS),
    "int": st.sampled_from([*INTS, math.nan]),
    "text": st.one_of(st.sampled_from(TEXT), st.text()),
    "digits": st.sampled_from(DIGITS),
}


def kind_of(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float):
        return "float"
    if isinstance(value, int):
        return "int"
    if not isinstance(value, str):
        return None
    if value.startswith(("http://", "https://")):
        return "url"
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return "text"
    return "time"


def leaves(value: Any, path: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    """(path, value) of every scalar in a JSON value."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from leaves(item, (*path, i))
    else:
        yield path, value


def replace(value: Any, path: tuple, new: Any) -> Any:
    """A copy of ``value`` with the scalar at ``path`` replaced."""
    if not path:
        return new
    head, *rest = path
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[head] = replace(value[head], tuple(rest), new)
    return copy


@dataclass
class Known:
    """Real ids, so requests get past 'not found' to the code behind the lookup."""

    tenant: str
    events: list[str]
    tenants: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.tenants = [self.tenant, str(uuid.uuid4())]
        self.events = [*self.events, str(uuid.uuid4())]


def _result(known: Known) -> dict[str, Any]:
    detection = {"label": "person", "class_id": 0, "confidence": 0.9, "box": [1.0, 2.0, 30.0, 40.0]}
    return {
        "results": [
            {
                "event_id": known.events[0],
                "lease_id": None,
                "k": 1,
                "moments": [{"index": 0, "width": 640, "height": 480, "detections": [detection]}],
                "verdict": [{"label": "person", "moments": 1, "best": 0.9, "median": 0.9}],
                "timings_ms": {"fetch": 1.5, "infer": 20.0},
                "model": "yolov8n",
                "provider": "cpu",
            }
        ]
    }


# A valid JSON body per operation (method, path template).
SEEDS: dict[tuple[str, str], Callable[[Known], dict[str, Any]]] = {
    ("POST", "/v1/events"): lambda k: event_body(2, hint="person", client_event_id=uuid.uuid4().hex),
    ("POST", "/v1/worker/enroll"): lambda k: {"code": "c" * 12, "name": "garage-pc"},
    ("POST", "/v1/workers/enroll"): lambda k: {"code": "c" * 12, "name": "garage-pc"},
    ("POST", "/v1/worker/lease"): lambda k: {"max_events": 1, "wait_s": 0},
    ("POST", "/v1/worker/results"): _result,
    ("POST", "/v1/worker/heartbeat"): lambda k: {
        "paused": False,
        "provider": "cpu",
        "model": "yolov8n",
        "metrics": {"images_per_s": 12.5, "latency_infer_p99_ms": 40.0},
        "leases": ["standard:1-0"],
    },
    ("POST", "/v1/worker/dead-letter"): lambda k: {"lease_ids": ["standard:1-0"], "reason": "poison"},
    ("POST", "/admin/tenants"): lambda k: {"name": f"fuzz-{uuid.uuid4().hex[:8]}", "tier": "guardian"},
    ("PUT", "/admin/tenants/{tenant}/tier"): lambda k: {"tier": "pro"},
    ("PUT", "/admin/tenants/{tenant}/webhook"): lambda k: {"url": "https://hooks.example.com/insane"},
    ("PUT", "/admin/tenants/{tenant}/private-hosts"): lambda k: {"hosts": ["nvr.lan", "192.168.1.20"]},
    ("PUT", "/admin/tenants/{tenant}/ports"): lambda k: {"ports": [5000, 81]},
    ("POST", "/admin/enroll-codes"): lambda k: {"tenant": k.tenant, "ttl_s": 600},
}
# Valid query parameters per operation.
QUERIES: dict[tuple[str, str], Callable[[Known], dict[str, str]]] = {
    ("GET", "/v1/events"): lambda k: {
        "camera": "front",
        "status": "queued",
        "since": (datetime.now(UTC) - timedelta(days=1)).isoformat(),
        "until": datetime.now(UTC).isoformat(),
        "limit": "10",
    },
}
# Path parameters: a real id, so the handler goes on past its lookup.
PATH_IDS: dict[str, Callable[[Known], str]] = {
    "tenant": lambda k: k.tenant,
    "event_id": lambda k: k.events[0],
    "key_id": lambda k: "0123456789abcdef",
    "blob": lambda k: "0" * 32,
    "slug": lambda k: "quota-exceeded",
    "model": lambda k: "yolov8n",
}
