"""Hostile images in one event: each is a clear per-moment error, the good moments are still reviewed,
and the worker keeps running (the next event is reviewed normally)."""

from __future__ import annotations

import asyncio
import struct
import zlib
from collections.abc import Iterator
from typing import Any

import pytest

from core.worker.state import WorkerState
from insane.devkit.camera import serve_images
from insane.devkit.client import allow_private_hosts, enroll_worker, make_tenant, post_event, wait_done
from insane.devkit.worker import make_worker

pytestmark = pytest.mark.timeout(120)


def _png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _patched(data: bytes, marker: bytes, offset: int, new: bytes) -> bytes:
    at = data.index(marker) + offset
    return data[:at] + new + data[at + len(new) :]


def hostile(good: bytes) -> dict[str, tuple[bytes, tuple[str, ...]]]:
    """name -> (bytes, words the moment's error must contain)."""
    return {
        "truncated.jpg": (good[: len(good) // 2], ("truncated",)),
        "corrupt.jpg": (_patched(good, b"\xff\xc4", 4, b"\xff" * 36), ("corrupt",)),  # a broken Huffman table
        "empty.jpg": (b"", ("empty",)),
        "polyglot.jpg": (b"<html><script>alert(1)</script>" + good, ("not a jpeg",)),
        "bomb.png": (_png_header(100_000, 100_000), ("megapixels", "limit")),
        "bomb.jpg": (_patched(good, b"\xff\xc0", 5, (60_000).to_bytes(2, "big") * 2), ("megapixels", "limit")),
        "wrong-type.jpg": (b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", ("gif",)),
    }


@pytest.fixture(scope="module")
def relay_overrides() -> dict[str, Any]:
    return {"lease_idle_s": 10.0}


@pytest.fixture(scope="module")
def relay_app_options() -> dict[str, Any]:
    return {"background": False}


@pytest.fixture(scope="module")
def files(sample_images) -> Iterator[tuple[str, dict]]:
    cases = hostile(sample_images["bus.jpg"])
    served = {name: data for name, (data, _) in cases.items()}
    served.update(
        {
            "bus.jpg": sample_images["bus.jpg"],
            "zidane.jpg": sample_images["zidane.jpg"],
            "jpeg-zip.jpg": sample_images["zidane.jpg"] + b"PK\x03\x04" + b"\0" * 64,
        }
    )  # a JPEG that is also a ZIP
    with serve_images(served) as server:
        yield server.base, cases


async def test_each_hostile_image_is_one_clear_moment_error(relay, files, small_onnx) -> None:
    url, cases = files
    tenant = make_tenant(relay.url)
    allow_private_hosts(relay.url, tenant.id, ["127.0.0.1"])
    creds = enroll_worker(relay.url, tenant=tenant.id)
    worker = make_worker(relay.url, creds.secret, small_onnx, dedicated=tenant.id)
    names = ["bus.jpg", *cases, "zidane.jpg", "jpeg-zip.jpg"]
    task = asyncio.create_task(worker.run())
    try:
        event_id = post_event(relay.url, tenant, urls=[f"{url}/{n}" for n in names])
        view = (await wait_done(relay.url, tenant, [event_id]))[event_id]
        assert worker.state not in (WorkerState.ERROR, WorkerState.STOPPED)
        after = post_event(relay.url, tenant, urls=[f"{url}/bus.jpg"])  # the worker still works
        second = (await wait_done(relay.url, tenant, [after]))[after]
    finally:
        await worker.stop()
        await task
    assert view["status"] == "done" and view["k"] == len(names)
    moments = {names[m["index"]]: m for m in view["moments"]}
    for name, (_, words) in cases.items():
        error = (moments[name]["error"] or "").lower()
        assert error and any(w in error for w in words), (name, error)
        assert not moments[name]["detections"]
    for good, width in (("bus.jpg", 810), ("zidane.jpg", 1280), ("jpeg-zip.jpg", 1280)):
        assert moments[good]["error"] is None and moments[good]["width"] == width, moments[good]
    assert second["status"] == "done" and second["moments"][0]["error"] is None
    assert worker.snapshot().errors_total == len(cases)
