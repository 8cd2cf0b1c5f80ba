"""The dashboard's picture pane, in the real app (offscreen) against a real relay and worker: the selected
event's best moment with its boxes drawn, and a shared worker that shows no other tenant's picture until
the operator allows it in Settings. Plus the pane alone: boxes land on a scaled, oriented picture."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QImage

from core.protocol import Detection
from core.settings import load_settings
from core.worker import MomentPicture, PicturePolicy
from desktop.controller import Controller
from desktop.picture import MomentView, colour_for, decode_picture, no_picture_text
from desktop.tokens import TokenStore
from insane.devkit.client import Creds, enroll_worker, make_tenant, post_event
from tests.desktop.qtasync import run_qt, until

pytestmark = pytest.mark.slow


def settings_for(relay_url: str, model: Path):
    return load_settings(relay_url=relay_url, model=str(model), worker_threads=1, worker_lease_wait_s=1.0)


def select(controller: Controller, camera: str) -> None:
    dash = controller.dashboard
    rows = [r[1] for r in dash.recent_rows()]
    dash.events_table.selectRow(rows.index(camera))


async def shown_picture(controller: Controller, camera: str) -> MomentPicture:
    """Select the event of ``camera`` and wait for its picture to be decoded and handed to the pane."""
    ready = asyncio.Event()
    got: list[MomentPicture] = []

    def on_ready(picture: MomentPicture, image: QImage) -> None:
        got.append(picture)
        ready.set()

    controller.picture_ready.connect(on_ready)
    try:
        select(controller, camera)
        await asyncio.wait_for(ready.wait(), 30)
    finally:
        controller.picture_ready.disconnect(on_ready)
    return got[-1]


async def reviewed(controller: Controller, tenant: Creds, camera: str, photo: bytes) -> None:
    post_event(controller.settings.relay_url, tenant, uploads=[photo], camera=camera)
    await until(lambda: camera in [r[1] for r in controller.dashboard.recent_rows()], 120, f"event {camera} shown")


def box_in_widget(view: MomentView, picture: MomentPicture, det: Detection) -> QRectF:
    target = view.image_rect()
    sx, sy = target.width() / picture.width, target.height() / picture.height
    x1, y1, x2, y2 = det.box
    return QRectF(target.left() + x1 * sx, target.top() + y1 * sy, (x2 - x1) * sx, (y2 - y1) * sy)


def assert_boxes_drawn(shot: QImage, view: MomentView, picture: MomentPicture) -> None:
    """Each box's colour on its outline: at the middle of at least one of its edges (another box or a
    label may cover a point or two, never all four)."""
    assert picture.detections, "these photos have people in them: nothing to check without boxes"
    for det in picture.detections:
        r = box_in_widget(view, picture, det)
        edges = [(r.center().x(), r.top()), (r.center().x(), r.bottom()), (r.left(), r.center().y())]
        edges.append((r.right(), r.center().y()))
        colours = {QColor(shot.pixel(round(x), round(y))).name() for x, y in edges}
        assert colour_for(det.class_id).name() in colours, (det, colours)


def difference(shot: QImage, view: MomentView, photo: bytes) -> float:
    """Mean absolute difference (0..255) between the pane's picture area and ``photo``, both at 48×27."""
    rect = view.image_rect().toRect()
    small = (48, 27)
    modes = (Qt.AspectRatioMode.IgnoreAspectRatio, Qt.TransformationMode.SmoothTransformation)
    a = shot.copy(rect).scaled(*small, *modes)
    b = QImage.fromData(photo).scaled(*small, *modes)
    total = 0
    for y in range(small[1]):
        for x in range(small[0]):
            pa, pb = QColor(a.pixel(x, y)), QColor(b.pixel(x, y))
            total += abs(pa.red() - pb.red()) + abs(pa.green() - pb.green()) + abs(pa.blue() - pb.blue())
    return total / (small[0] * small[1] * 3)


def test_the_pane_shows_the_selected_events_frame_with_its_boxes(
    qtbot, qapp, relay, tenant, shipped_fall_onnx: Path, sample_images, app_env: Path, tmp_path: Path
) -> None:
    TokenStore().save(relay.url, enroll_worker(relay.url, tenant=tenant.id).secret)  # dedicated to the tenant
    controller = Controller(settings_for(relay.url, shipped_fall_onnx), use_tray=False)
    dash, view = controller.dashboard, controller.dashboard.picture
    qtbot.addWidget(dash)
    photos = {"pitch": sample_images["zidane.jpg"], "bus-stop": sample_images["bus.jpg"]}

    async def scenario() -> None:
        controller.show()
        assert await controller.start()
        for camera, photo in photos.items():
            await reviewed(controller, tenant, camera, photo)
        worker = controller.worker
        assert worker.picture_policy.dedicated_tenant == uuid.UUID(tenant.id)  # the relay said so

        for camera, photo in photos.items():
            picture = await shown_picture(controller, camera)
            assert picture.event_id == dash.selected_event().event_id
            assert picture is worker.moment_picture(picture.event_id) and picture.image == photo
            assert view.has_image() and view.detections == picture.detections
            shot = view.grab().toImage()
            assert shot.save(str(tmp_path / f"picture-{camera}.png"))
            rect = view.image_rect()
            assert rect.width() / rect.height() == pytest.approx(picture.width / picture.height, rel=0.02)
            # This event's frame, not the other's: the pane's pixels are close to its photo only.
            other = next(p for c, p in photos.items() if c != camera)
            mine, theirs = difference(shot, view, photo), difference(shot, view, other)
            assert mine < 20 and mine < theirs / 2, (camera, mine, theirs)
            assert_boxes_drawn(shot, view, picture)
        assert dash.grab().save(str(tmp_path / "dashboard.png"))
        controller.request_quit()
        await asyncio.wait_for(controller.finished(), 60)

    run_qt(qapp, scenario())


def test_a_shared_worker_shows_other_tenants_pictures_only_when_settings_allow(
    qtbot, qapp, relay, small_onnx: Path, sample_images, app_env: Path, tmp_path: Path
) -> None:
    TokenStore().save(relay.url, enroll_worker(relay.url).secret)  # a shared worker: every event is another's
    household = make_tenant(relay.url)
    controller = Controller(settings_for(relay.url, small_onnx), use_tray=False)
    dash, view = controller.dashboard, controller.dashboard.picture
    qtbot.addWidget(dash)

    async def scenario() -> None:
        controller.show()
        assert await controller.start()
        worker = controller.worker
        await reviewed(controller, household, "before", sample_images["bus.jpg"])
        select(controller, "before")
        assert not view.has_image() and "this worker is shared" in view.message
        assert worker.moment_picture(dash.selected_event().event_id) is None
        assert view.grab().save(str(tmp_path / "picture-withheld.png"))

        # Settings: the operator allows it; saved to the config file, applied without a restart.
        controller.open_settings()
        dialog = controller.settings_dialog
        assert not dialog.other_pictures.isChecked()  # off by default
        dialog.other_pictures.setChecked(True)
        dialog.buttons.accepted.emit()
        await until(lambda: dialog.message.text().startswith("saved"), what="the save")
        assert controller.worker is worker and worker.picture_policy.other_tenants
        assert load_settings().worker_pictures_other_tenants is True

        await reviewed(controller, household, "after", sample_images["zidane.jpg"])
        picture = await shown_picture(controller, "after")
        assert view.has_image() and picture.image == sample_images["zidane.jpg"]
        assert view.grab().save(str(tmp_path / "picture-allowed.png"))

        # Turned off again: the picture leaves the pane and the worker at once.
        dialog.other_pictures.setChecked(False)
        dialog.buttons.accepted.emit()
        await until(lambda: not view.has_image(), what="the pane to clear")
        assert "this worker is shared" in view.message and worker.moment_picture(picture.event_id) is None
        controller.request_quit()
        await asyncio.wait_for(controller.finished(), 60)

    run_qt(qapp, scenario())


def test_boxes_land_on_a_picture_decoded_smaller_than_it_was_reviewed(qtbot, sample_images) -> None:
    data = sample_images["frame1080.jpg"]  # 1920×1080, decoded at most 960 wide here
    image = decode_picture(data, max_side=960)
    assert (image.width(), image.height()) == (960, 540)
    assert decode_picture(b"\xff\xd8 not a jpeg").isNull()
    view = MomentView()
    qtbot.addWidget(view)
    view.resize(960, 540)
    det = Detection(label="person", class_id=2, confidence=0.9, box=(400.0, 200.0, 1200.0, 900.0))  # 1080p pixels
    assert view.set_picture(image, (1920, 1080), [det])
    shot = view.grab().toImage()
    # Half the size: the box's bottom edge is at y=450, its left edge at x=200.
    assert QColor(shot.pixel(400, 450)) == colour_for(2) and QColor(shot.pixel(200, 300)) == colour_for(2)
    assert QColor(shot.pixel(400, 460)) != colour_for(2)


def test_the_pane_says_why_it_has_no_picture() -> None:
    own, other = uuid.uuid4(), uuid.uuid4()
    assert "not running" in no_picture_text(own, None)
    assert no_picture_text(own, PicturePolicy()).startswith("this worker is shared")
    assert no_picture_text(other, PicturePolicy(dedicated_tenant=own)).startswith("this is another tenant's")
    assert no_picture_text(own, PicturePolicy(dedicated_tenant=own)).startswith("no picture kept")
    assert no_picture_text(other, PicturePolicy(other_tenants=True)).startswith("no picture kept")
