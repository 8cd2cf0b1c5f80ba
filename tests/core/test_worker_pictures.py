"""The worker's picture store: the best moment per event, bounded in events and bytes, and whose it keeps."""

from __future__ import annotations

import itertools
import uuid

import pytest

from core.protocol import Detection
from core.settings import load_settings
from core.worker import WorkerConfig
from core.worker.build import worker_config
from core.worker.pictures import MomentPicture, PicturePolicy, PictureStore

OWN, OTHER = uuid.uuid4(), uuid.uuid4()


def det(confidence: float, label: str = "person") -> Detection:
    return Detection(label=label, class_id=0, confidence=confidence, box=(1.0, 2.0, 30.0, 40.0))


def picture(event: uuid.UUID, index: int = 0, *confidences: float, tenant=OWN, size: int = 100) -> MomentPicture:
    image = bytes([index % 256]) * size
    return MomentPicture(event, tenant, index, image, 64, 48, tuple(det(c) for c in confidences))


def everything() -> PicturePolicy:
    return PicturePolicy(other_tenants=True)


@pytest.mark.parametrize("order", list(itertools.permutations(range(4))))
def test_an_event_keeps_its_most_confident_moment_whatever_the_order_moments_finish(order) -> None:
    event = uuid.uuid4()
    moments = [picture(event, 0, 0.4), picture(event, 1, 0.3, 0.91), picture(event, 2), picture(event, 3, 0.9)]
    store = PictureStore(10, 1 << 20, everything())
    for i in order:
        store.offer(moments[i])
    best = store.get(event)
    assert best is moments[1] and best.top_confidence == 0.91
    assert len(store) == 1 and store.bytes == 100


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 1, 0), (1, 2, 0)])
def test_with_nothing_found_the_earliest_reviewed_moment_is_kept(order) -> None:
    event = uuid.uuid4()
    moments = [picture(event, i) for i in (3, 5, 9)]  # a shrunk review: K moments spread over the event
    store = PictureStore(10, 1 << 20, everything())
    for i in order:
        store.offer(moments[i])
    assert store.get(event).index == 3 and store.get(event).detections == ()
    # A back-fill: a later moment that finds nothing either changes nothing, an earlier one is the earliest
    # reviewed now, and one that finds something wins wherever it is.
    assert not store.offer(picture(event, 6))
    assert store.offer(picture(event, 1)) and store.get(event).index == 1
    assert store.offer(picture(event, 12, 0.3)) and store.get(event).index == 12


def test_equal_confidence_keeps_the_earlier_moment() -> None:
    event = uuid.uuid4()
    store = PictureStore(10, 1 << 20, everything())
    store.offer(picture(event, 4, 0.8))
    assert not store.offer(picture(event, 7, 0.8))
    assert store.offer(picture(event, 2, 0.8))
    assert store.get(event).index == 2


def test_at_most_keep_events_the_least_recently_updated_going_first() -> None:
    store = PictureStore(3, 1 << 20, everything())
    events = [uuid.uuid4() for _ in range(5)]
    for e in events[:3]:
        store.offer(picture(e, 0, 0.5))
    store.offer(picture(events[0], 1, 0.9))  # a better moment of the oldest event: now the most recent
    for e in events[3:]:
        store.offer(picture(e, 0, 0.5))
    assert [store.get(e) is not None for e in events] == [True, False, False, True, True]
    assert len(store) == 3 and store.bytes == 300


def test_bytes_never_pass_the_budget_and_a_picture_larger_than_it_is_not_kept() -> None:
    store = PictureStore(100, 1000, everything())
    events = [uuid.uuid4() for _ in range(6)]
    for e in events:
        store.offer(picture(e, 0, 0.5, size=300))
        assert store.bytes <= 1000
    assert [store.get(e) is not None for e in events] == [False, False, False, True, True, True]
    huge = uuid.uuid4()
    assert not store.offer(picture(huge, 0, 0.99, size=1001))
    assert store.get(huge) is None and len(store) == 3 and store.bytes == 900
    # Replacing an event's picture by a bigger one counts only the new bytes, and evicts to make room.
    assert store.offer(picture(events[5], 1, 0.9, size=500))
    assert store.bytes == 800 and store.get(events[3]) is None


def test_a_store_that_keeps_nothing_keeps_nothing() -> None:
    store = PictureStore(0, 1 << 20, everything())
    assert not store.offer(picture(uuid.uuid4(), 0, 0.9)) and len(store) == 0
    with pytest.raises(ValueError):
        PictureStore(-1, 10)


def test_a_shared_worker_keeps_no_picture_by_default() -> None:
    # The default of every layer: the policy, the engine's config, the setting the tray and CLI read.
    assert PicturePolicy() == PicturePolicy(dedicated_tenant=None, other_tenants=False)
    assert WorkerConfig().pictures_other_tenants is False
    settings = load_settings()
    assert settings.worker_pictures_other_tenants is False
    assert worker_config(settings, pictures=True).pictures_other_tenants is False


def test_only_a_worker_with_a_dashboard_keeps_pictures() -> None:
    settings = load_settings(worker_pictures_other_tenants=True)
    assert worker_config(settings).pictures_keep == 0  # insane worker, headless: nobody to show them to
    assert worker_config(settings, pictures=True).pictures_keep == WorkerConfig().pictures_keep > 0
    store = PictureStore(10, 1 << 20)
    for tenant in (OWN, OTHER):
        event = uuid.uuid4()
        assert not store.offer(picture(event, 0, 0.9, tenant=tenant))
        assert store.get(event) is None
    assert len(store) == 0 and store.bytes == 0


def test_a_dedicated_worker_keeps_its_own_tenants_pictures_only() -> None:
    store = PictureStore(10, 1 << 20, PicturePolicy(dedicated_tenant=OWN))
    own, other = uuid.uuid4(), uuid.uuid4()
    assert store.offer(picture(own, 0, 0.9, tenant=OWN))
    assert not store.offer(picture(other, 0, 0.9, tenant=OTHER))
    assert store.get(own) is not None and store.get(other) is None and len(store) == 1


def test_turning_other_tenants_off_forgets_theirs_at_once() -> None:
    store = PictureStore(10, 1 << 20, PicturePolicy(dedicated_tenant=OWN, other_tenants=True))
    own, other = uuid.uuid4(), uuid.uuid4()
    store.offer(picture(own, 0, 0.9, tenant=OWN))
    store.offer(picture(other, 0, 0.9, tenant=OTHER, size=50))
    assert store.get(other) is not None and store.bytes == 150
    store.set_policy(PicturePolicy(dedicated_tenant=OWN, other_tenants=False))
    assert store.get(other) is None and store.get(own) is not None
    assert len(store) == 1 and store.bytes == 100  # forgotten, not only hidden
    # Turned on again, what was forgotten stays forgotten.
    store.set_policy(PicturePolicy(dedicated_tenant=OWN, other_tenants=True))
    assert store.get(other) is None


def test_a_worker_that_learns_it_is_shared_forgets_its_former_tenants_pictures() -> None:
    # The relay's heartbeat answer is the word on dedication: a token re-enrolled as shared, say.
    store = PictureStore(10, 1 << 20, PicturePolicy(dedicated_tenant=OWN))
    event = uuid.uuid4()
    store.offer(picture(event, 0, 0.9, tenant=OWN))
    store.set_policy(PicturePolicy(dedicated_tenant=None))
    assert store.get(event) is None and len(store) == 0
    assert "none" in store.policy.describe()
