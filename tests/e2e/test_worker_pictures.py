"""The worker keeps each recent event's best moment for the dashboard, against a real relay and model:
its own tenant's on a dedicated worker (learnt from the relay's heartbeat answer), none by default on a
shared one, other tenants' only when the operator allows it."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from insane.devkit.client import enroll_worker, make_tenant, post_event, wait_done
from insane.devkit.worker import make_worker

pytestmark = pytest.mark.timeout(240)


def top(moment: dict) -> float:
    return max((d["confidence"] for d in moment["detections"]), default=-1.0)


async def test_a_dedicated_worker_keeps_its_tenants_best_moment_with_its_boxes(relay, sample_images, fall_model_onnx):
    tenant = make_tenant(relay.url)
    creds = enroll_worker(relay.url, tenant=tenant.id)
    # Not told it is dedicated: the relay's heartbeat answer says so before the first lease.
    worker = make_worker(relay.url, creds.secret, fall_model_onnx)
    assert worker.picture_policy.dedicated_tenant is None
    uploads = [sample_images["zidane.jpg"], sample_images["bus.jpg"], sample_images["frame1080.jpg"]]
    task = asyncio.create_task(worker.run())
    try:
        event_id = post_event(relay.url, tenant, uploads=uploads)
        view = (await wait_done(relay.url, tenant, [event_id]))[event_id]
    finally:
        await worker.stop()
        await task
    assert worker.picture_policy.dedicated_tenant == uuid.UUID(tenant.id)
    picture = worker.moment_picture(uuid.UUID(event_id))
    assert picture is not None
    moments = {m["index"]: m for m in view["moments"]}
    best = max(moments.values(), key=lambda m: (top(m), -m["index"]))
    assert top(best) > 0.25  # people in these photos: the choice is made on real detections
    assert picture.index == best["index"] and picture.image == uploads[best["index"]]
    assert (picture.width, picture.height) == (best["width"], best["height"])
    assert [(d.label, d.box) for d in picture.detections] == [
        (d["label"], pytest.approx(tuple(d["box"]))) for d in best["detections"]
    ]
    assert picture.tenant_id == uuid.UUID(tenant.id)
    assert worker.snapshot().recent[-1].tenant_id == uuid.UUID(tenant.id)  # the dashboard can say whose it is


async def test_a_shared_worker_keeps_other_tenants_pictures_only_when_allowed(relay, sample_images, small_onnx):
    tenant = make_tenant(relay.url)
    worker = make_worker(relay.url, enroll_worker(relay.url).secret, small_onnx)
    task = asyncio.create_task(worker.run())
    try:
        hidden = post_event(relay.url, tenant, uploads=[sample_images["bus.jpg"]])
        await wait_done(relay.url, tenant, [hidden])
        assert worker.picture_policy.dedicated_tenant is None and not worker.picture_policy.other_tenants
        assert worker.moment_picture(uuid.UUID(hidden)) is None  # reviewed, but its picture not kept

        worker.keep_other_tenants_pictures(True)  # the operator's choice in Settings
        shown = post_event(relay.url, tenant, uploads=[sample_images["zidane.jpg"]])
        await wait_done(relay.url, tenant, [shown])
        picture = worker.moment_picture(uuid.UUID(shown))
        assert picture is not None and picture.image == sample_images["zidane.jpg"]
        assert worker.moment_picture(uuid.UUID(hidden)) is None  # not kept back then: nothing to show now

        worker.keep_other_tenants_pictures(False)
        assert worker.moment_picture(uuid.UUID(shown)) is None
    finally:
        await worker.stop()
        await task
