"""The best moment of each recent event, kept for the dashboard: its image as fetched, with its boxes.

    store = PictureStore(keep=50, max_bytes=32 << 20, policy=PicturePolicy(dedicated_tenant=tenant))
    store.offer(picture)           # each reviewed moment; an event keeps its best one
    store.get(event_id)            # the MomentPicture, or None (never kept, evicted, or not allowed)
    store.set_policy(policy)       # forgets at once what the new policy does not allow

The best moment is the one with the most confident detection; when nothing was found in any moment, the
earliest reviewed one (lowest index). Memory is bounded twice: at most ``keep`` events, at most
``max_bytes`` of images, the least recently updated event going first. Images are kept as the bytes the
worker fetched (a JPEG is ~10× smaller than its decoded pixels) and decoded only when shown.

Whose pictures: a worker keeps the pictures of its own tenant's events when it is dedicated to one, and
other tenants' (every tenant's, on a shared worker) only when the operator turned that on. A picture the
policy does not allow is neither kept nor returned.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from uuid import UUID

from core.protocol import Detection

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PicturePolicy:
    """Whose events' pictures this worker may keep and show."""

    dedicated_tenant: UUID | None = None  # the tenant this worker is dedicated to; None: a shared worker
    other_tenants: bool = False  # the operator's choice (Settings); off by default

    def allows(self, tenant_id: UUID) -> bool:
        return self.other_tenants or (self.dedicated_tenant is not None and tenant_id == self.dedicated_tenant)

    def describe(self) -> str:
        if self.other_tenants:
            return "every tenant's events"
        if self.dedicated_tenant is not None:
            return f"tenant {self.dedicated_tenant}'s events only"
        return "none (a shared worker keeps other tenants' pictures only when Settings allow it)"


@dataclass(frozen=True)
class MomentPicture:
    """One reviewed moment of an event: the image as fetched (JPEG, PNG, ...) and what was found in it."""

    event_id: UUID
    tenant_id: UUID
    index: int  # the moment's index in its event
    image: bytes
    width: int  # the image's own size: the boxes are in these pixels
    height: int
    detections: tuple[Detection, ...]

    @property
    def top_confidence(self) -> float:
        return max((d.confidence for d in self.detections), default=-1.0)

    def beats(self, other: MomentPicture) -> bool:
        """True when this moment shows its event better than ``other``: a more confident detection, or on
        a tie (nothing found in either, say) the earlier moment."""
        return (self.top_confidence, -self.index) > (other.top_confidence, -other.index)


class PictureStore:
    """The best picture of each of the last ``keep`` events, within ``max_bytes``; see the module's docstring."""

    def __init__(self, keep: int, max_bytes: int, policy: PicturePolicy | None = None) -> None:
        if keep < 0 or max_bytes < 0:
            raise ValueError("keep and max_bytes must be 0 or more")
        self.keep = keep
        self.max_bytes = max_bytes
        self._policy = policy or PicturePolicy()
        self._pictures: OrderedDict[UUID, MomentPicture] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._pictures)

    @property
    def policy(self) -> PicturePolicy:
        return self._policy

    @property
    def bytes(self) -> int:
        """The bytes of images held now (never more than ``max_bytes``)."""
        return self._bytes

    def offer(self, picture: MomentPicture) -> bool:
        """Keep ``picture`` if the policy allows it and it is its event's best so far; True if kept."""
        if not self._policy.allows(picture.tenant_id) or len(picture.image) > self.max_bytes or self.keep == 0:
            return False
        held = self._pictures.get(picture.event_id)
        if held is not None and not picture.beats(held):
            return False
        if held is not None:
            self._bytes -= len(held.image)
        self._pictures[picture.event_id] = picture
        self._pictures.move_to_end(picture.event_id)
        self._bytes += len(picture.image)
        self._evict()
        return True

    def get(self, event_id: UUID) -> MomentPicture | None:
        picture = self._pictures.get(event_id)
        if picture is None or not self._policy.allows(picture.tenant_id):
            return None
        return picture

    def set_policy(self, policy: PicturePolicy) -> None:
        """Use ``policy`` from now on, and forget the pictures it does not allow."""
        if policy == self._policy:
            return
        log.info("pictures kept for the dashboard: %s", policy.describe())
        self._policy = policy
        for event_id in [e for e, p in self._pictures.items() if not policy.allows(p.tenant_id)]:
            self._bytes -= len(self._pictures.pop(event_id).image)

    def _evict(self) -> None:
        while self._pictures and (len(self._pictures) > self.keep or self._bytes > self.max_bytes):
            _, oldest = self._pictures.popitem(last=False)
            self._bytes -= len(oldest.image)
