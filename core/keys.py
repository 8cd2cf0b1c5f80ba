"""Every Redis key and channel of the relay and its workers, built in one place.

A tenant's keys share one hash tag, ``{t:<tenant id>}``, so each tenant lives in one Redis Cluster slot
and one Lua script can touch all of them; the shared pool's keys share ``{pool}``.

    keys.stream(tenant_id, "pro")       # insane:{t:<id>}:pro, the tenant's Pro lane
    keys.delivered(event_id)            # the workers an event was delivered to
    keys.READY["pro"]                   # tenants with work the shared pool may take, by due time

A key spelled anywhere else is a key someone will spell differently; the ACL rules of LAN workers are
built from these same functions (core/streams.acl_rules).
"""

from __future__ import annotations

from core.protocol import LANES

PREFIX = "insane"
GROUP = "workers"  # the consumer group of every lane stream


def tenant_tag(tenant_id: str) -> str:
    return f"{PREFIX}:{{t:{tenant_id}}}"


def stream(tenant_id: str, lane: str) -> str:
    """A tenant's lane: a stream read by the consumer group ``workers``."""
    return f"{tenant_tag(tenant_id)}:{lane}"


def dead(tenant_id: str) -> str:
    """A tenant's dead-letter stream."""
    return f"{tenant_tag(tenant_id)}:dead"


def routing(tenant_id: str) -> str:
    """The tenant's routing as the shared pool reads it: milliseconds an event waits for the tenant's own
    workers before the pool may take it, or -1 when the pool never may (policy ``own``)."""
    return f"{tenant_tag(tenant_id)}:routing"


def blob(tenant_id: str, blob_id: str) -> str:
    """An uploaded JPEG, cached for the workers (the relay's blob store holds the durable copy)."""
    return f"{tenant_tag(tenant_id)}:blob:{blob_id}"


def delivered(event_id: str) -> str:
    """The set of workers an event was delivered to: the only workers whose result it takes. Only the
    relay reads and writes it (not in the tenant's slot: a result names its event, not its tenant)."""
    return f"{PREFIX}:dlv:{event_id}"


def hold(blob_id: str) -> str:
    """``<worker>|<tenant>``: the worker whose lease lets it fetch a blob, and whose blob it is."""
    return f"{PREFIX}:hold:{blob_id}"


POOL = f"{PREFIX}:{{pool}}"
# Per lane, the tenants whose work the shared pool may take, scored by when (Unix ms): fair share is
# round robin in due order (core/pool.py).
READY = {lane: f"{POOL}:ready:{lane}" for lane in LANES}
ACTIVE = f"{POOL}:active"  # tenants that may have entries in their lanes (census, repair)
DEPTH = f"{POOL}:depth"  # hash: the last census of waiting entries, per lane and for the pool
WORK_CHANNEL = f"{PREFIX}:work"  # "<tenant>|<pool due ms or ->": wakes long-polls on every relay


def rate(tenant_id: str) -> str:
    """A tenant's GCRA theoretical arrival time (relay/ratelimit.py)."""
    return f"{PREFIX}:rate:{{{tenant_id}}}"


def vision_rate(tenant_id: str) -> str:
    """The tenant's bucket for the DeepStack API (relay/vision.py), in the same slot as its Pro bucket."""
    return f"{PREFIX}:vision-rate:{{{tenant_id}}}"


def done_channel(tenant_id: str) -> str:
    """Pub/sub channel of a tenant's event ids whose result just landed (SSE on every relay)."""
    return f"{PREFIX}:done:{tenant_id}"


DONE_PATTERN = done_channel("*")  # every tenant's done channel: PSUBSCRIBE of a relay's result waiter


RECONCILER_LOCK = f"{PREFIX}:reconciler"
CENSUS_LOCK = f"{PREFIX}:census"
LEGACY_LOCK = f"{PREFIX}:legacy-lanes"


def legacy_stream(lane: str) -> str:
    """The two global lane streams of relays before per-tenant routing (moved at start, then deleted)."""
    return f"{PREFIX}:{{lane}}:{lane}"
