"""Every Redis key and channel of the relay and its workers, built in one place.

    keys.stream("pro")            # insane:{lane}:pro
    keys.delivered(event_id)      # insane:dlv:<event id>, the workers an event was delivered to

A key spelled anywhere else is a key someone will spell differently; ACL rules for LAN workers are
built from these same functions (core/streams.acl_rules).
"""

from __future__ import annotations

PREFIX = "insane"


def stream(lane: str) -> str:
    """A lane's stream; one hash tag, so both lanes live in one Redis Cluster slot."""
    return f"{PREFIX}:{{lane}}:{lane}"


DEAD = f"{PREFIX}:{{lane}}:dead"


def blob(blob_id: str) -> str:
    """An uploaded JPEG (a cache: the relay's blob store holds the durable copy)."""
    return f"{PREFIX}:blob:{blob_id}"


def hold(blob_id: str) -> str:
    """The worker whose lease currently allows it to fetch a blob."""
    return f"{PREFIX}:hold:{blob_id}"


def delivered(event_id: str) -> str:
    """The set of workers an event was delivered to: the only workers whose result it takes."""
    return f"{PREFIX}:dlv:{event_id}"


def rate(tenant_id: str) -> str:
    """A tenant's GCRA theoretical arrival time (relay/ratelimit.py)."""
    return f"{PREFIX}:rate:{tenant_id}"


def done_channel(tenant_id: str) -> str:
    """Pub/sub channel of a tenant's event ids whose result just landed (SSE on every relay)."""
    return f"{PREFIX}:done:{tenant_id}"


RECONCILER_LOCK = f"{PREFIX}:reconciler"
