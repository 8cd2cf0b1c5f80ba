"""The wire contract between the relay's worker API and the worker (JSON over HTTPS).

Both sides import these models, so a change here is a change to the contract: update
``docs/architecture.md`` in the same commit.

Worker API (all but ``enroll`` take ``Authorization: Bearer <worker token>``):

    POST /v1/worker/enroll        EnrollRequest   -> EnrollResponse  (also at its first path, /v1/workers/enroll)
    POST /v1/worker/lease         LeaseRequest    -> LeaseResponse   (long-poll up to wait_s)
    GET  /v1/worker/blobs/{blob}  -> image/jpeg   (only to the worker holding a lease on its event)
    POST /v1/worker/results       ResultsPost     -> ResultsResponse (stored durably, then acked)
    POST /v1/worker/heartbeat     Heartbeat       -> HeartbeatResponse (renews the leases it lists)
    POST /v1/worker/dead-letter   DeadLetterRequest -> DeadLetterResponse (LAN workers: entries past
                                  the delivery limit, or malformed, that this worker holds)

Delivery is at least once; results are exactly once (the relay writes them keyed by event id and
ignores a second one), so a worker may always retry a post.

Numbers are finite: NaN and Infinity are refused (422 on the relay; PostgreSQL's jsonb cannot hold them), and
every count, index and text has a bound, so a body that validates here is one the relay can store.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    model_serializer,
    model_validator,
)

Lane = Literal["pro", "standard"]
LANES: tuple[Lane, ...] = ("pro", "standard")  # leasing order: Pro first
LANE_RANK: dict[str, int] = {lane: rank for rank, lane in enumerate(LANES)}  # sort key: Pro (0) first
MAX_INDEX = 100_000  # moment indexes, class ids, counts: far above any real event, far below int overflow
MAX_PIXELS_SIDE = 1 << 20
Name = Annotated[str, StringConstraints(min_length=1, max_length=100)]  # a metric or stage name


class _Model(BaseModel):
    # allow_inf_nan=False: JSON's NaN/Infinity extensions (and 1e999) are refused at the edge, on both sides.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class _Answer(BaseModel):
    """A relay answer: a worker ignores fields it does not know, so a newer relay can add some."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class MomentRef(_Model):
    """One frame to review: either a tenant URL (fetched under the SSRF policy) or an uploaded blob."""

    index: int = Field(ge=0, le=MAX_INDEX, description="position of the moment in the event, from 0")
    url: str | None = Field(None, description="http(s) URL of the JPEG, fetched by the worker")
    blob: str | None = Field(None, description="id of an uploaded JPEG, served by GET /v1/worker/blobs/{blob}")

    @model_validator(mode="after")
    def _exactly_one_source(self) -> MomentRef:
        if (self.url is None) == (self.blob is None):
            raise ValueError("a moment has exactly one of url and blob")
        return self


class LeasedEvent(_Model):
    lease_id: str = Field(description="opaque handle of this delivery; send it back with the result")
    event_id: UUID
    tenant_id: UUID
    lane: Lane
    camera: str
    hint: str | None = None
    created_at: datetime = Field(description="when the relay accepted the event; older events go first")
    deliveries: int = Field(1, ge=1, description="how many times this entry has been delivered")
    moments: list[MomentRef]
    allow_private_hosts: list[str] = Field(
        default_factory=list,
        description="the tenant's allow-list of private hosts; honoured only by a worker dedicated to the tenant",
    )
    allow_ports: list[int] = Field(
        default_factory=list,
        description="ports the tenant's URLs may use besides 80, 443 and 8080-8999 (core.ssrf); left out when empty",
    )

    @model_serializer(mode="wrap")
    def _omit_empty_ports(self, handler: SerializerFunctionWrapHandler) -> dict:
        # Workers older than allow_ports forbid unknown fields: a tenant without extra ports stays readable to them.
        data = handler(self)
        if not self.allow_ports:
            data.pop("allow_ports", None)
        return data


class LeaseRequest(_Model):
    max_events: int = Field(8, ge=1, le=64)
    wait_s: float = Field(10.0, ge=0, le=30, description="long-poll: how long to wait for work")


class LeaseResponse(_Answer):
    events: list[LeasedEvent]
    queue_depth: dict[Lane, int] = Field(default_factory=dict, description="entries waiting per lane")


class Detection(_Model):
    label: str = Field(max_length=200)
    class_id: int = Field(ge=0, le=MAX_INDEX)
    confidence: float = Field(ge=0, le=1)
    box: tuple[float, float, float, float] = Field(description="x1, y1, x2, y2 in the original image's pixels")


class MomentResult(_Model):
    index: int = Field(ge=0, le=MAX_INDEX)
    detections: list[Detection] = Field(default_factory=list)
    width: int | None = Field(None, ge=0, le=MAX_PIXELS_SIDE)
    height: int | None = Field(None, ge=0, le=MAX_PIXELS_SIDE)
    error: str | None = Field(
        None, max_length=2000, description="why this moment could not be reviewed (the rest still was)"
    )


class ClassVerdict(_Model):
    label: str = Field(max_length=200)
    moments: int = Field(ge=1, le=MAX_INDEX, description="in how many reviewed moments the class was seen")
    best: float = Field(ge=0, le=1)
    median: float = Field(ge=0, le=1)


class EventResult(_Model):
    event_id: UUID
    lease_id: str | None = Field(None, max_length=200, description="the delivery to ack; None for a back-fill")
    k: int = Field(ge=0, le=MAX_INDEX, description="how many moments were reviewed")
    moments: list[MomentResult]
    verdict: list[ClassVerdict]
    timings_ms: dict[Name, float] = Field(
        default_factory=dict, max_length=64, description="per stage: fetch, decode, infer, total"
    )
    model: str = Field(max_length=500)
    provider: str = Field(max_length=200)
    backfill: bool = Field(
        False, description="adds the moments a shrunk review skipped; stored only if it reviews more (k grows)"
    )


class ResultsPost(_Model):
    results: list[EventResult] = Field(min_length=1, max_length=64)


class ResultsResponse(_Answer):
    stored: list[UUID] = Field(description="events whose result this post wrote")
    duplicates: list[UUID] = Field(description="events that already had a result (a retry or a stale worker)")
    acked: int = Field(description="entries this worker held that are now acked and removed from the queue")
    refused: list[UUID] = Field(
        default_factory=list,
        description="events never delivered to this worker (or gone): their results are not stored; do not retry",
    )


class Heartbeat(_Model):
    paused: bool = False
    provider: str = Field("", max_length=200)
    model: str = Field("", max_length=500)
    metrics: dict[Name, float] = Field(default_factory=dict, max_length=256, description="finite numbers by name")
    leases: list[str] = Field(
        default_factory=list,
        max_length=4096,
        description="lease ids this worker still works on or holds a result for; the relay renews them, so a "
        "slow review is not reclaimed and reviewed twice",
    )


class HeartbeatResponse(_Answer):
    queue_depth: dict[Lane, int] = Field(default_factory=dict)
    renewed: int = Field(0, description="how many of the listed leases this worker still held")
    dedicated_tenant: UUID | None = Field(None, description="the tenant this worker is dedicated to (None: shared)")


class DeadLetterRequest(_Model):
    lease_ids: list[str] = Field(min_length=1, max_length=64)
    reason: str = Field(min_length=1, max_length=500, description="why the worker will not review them")


class DeadLetterResponse(_Answer):
    moved: list[str] = Field(description="lease ids moved to the dead-letter stream (their events are failed)")


class EnrollRequest(_Model):
    code: str = Field(min_length=8, max_length=200)
    name: str = Field(min_length=1, max_length=100, description="a name for this worker, e.g. the PC's name")


class EnrollResponse(_Answer):
    worker_id: UUID
    token: str
    dedicated_tenant: UUID | None = None
