"""The on-disk queue keeps whole entries across restarts and crashes, in order, within its bound."""

from __future__ import annotations

import os
from pathlib import Path

from core.integrations.spool import Spool
from tests.core.integrations.bridge_kit import jpeg


def meta(n: int) -> dict:
    return {"camera": "front_door", "idempotency_key": f"frigate:{n}", "frigate_id": str(n)}


def test_entries_survive_a_restart_oldest_first(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", 10**8)
    images = [jpeg(seed=i) for i in range(3)]
    spool.put(meta(1), images)
    spool.put(meta(2), images[:1])
    again = Spool(tmp_path / "spool", 10**8)
    assert [e.meta["frigate_id"] for e in again.entries()] == ["1", "2"]
    assert again.entries()[0].images() == images and len(again) == 2
    again.remove(again.entries()[0])
    assert [e.meta["frigate_id"] for e in Spool(tmp_path / "spool", 10**8).entries()] == ["2"]


def test_past_its_bound_the_oldest_entries_go_with_an_error(tmp_path: Path, caplog) -> None:
    image = jpeg(seed=1)
    spool = Spool(tmp_path / "spool", max_bytes=3 * len(image) + 1000)
    for n in range(5):
        spool.put(meta(n), [image])
    assert [e.meta["frigate_id"] for e in spool.entries()] == ["2", "3", "4"]
    assert spool.bytes <= 3 * len(image) + 1000
    assert caplog.text.count("the event queue is over") == 2 and "frigate:0" in caplog.text


def test_a_single_entry_over_the_bound_is_still_kept(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", max_bytes=10)
    spool.put(meta(1), [jpeg()])
    assert len(spool) == 1  # the newest is never the one dropped


def test_what_a_crash_left_half_written_is_cleaned_up_and_an_update_is_finished(tmp_path: Path) -> None:
    folder = tmp_path / "spool"
    spool = Spool(folder, 10**8)
    kept = spool.put(meta(1), [jpeg()])
    (folder / ".tmp-00000000000000000001-000000").mkdir()  # a put cut short before its rename
    os.rename(kept.path, folder / f".old-{kept.path.name}")  # an update cut short between its renames
    again = Spool(folder, 10**8)
    assert [e.meta["frigate_id"] for e in again.entries()] == ["1"]
    assert sorted(p.name for p in folder.iterdir()) == [kept.path.name]


def test_an_update_replaces_the_content_and_keeps_the_place(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", 10**8)
    first = spool.put(meta(1), [])
    spool.put(meta(2), [jpeg()])
    spool.update(first, first.meta, [jpeg(seed=5)])
    entries = Spool(tmp_path / "spool", 10**8).entries()
    assert [e.meta["frigate_id"] for e in entries] == ["1", "2"] and entries[0].images() == [jpeg(seed=5)]


def test_a_rejected_or_unreadable_entry_is_set_aside_with_its_reason(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", 10**8)
    spool.reject(spool.put(meta(1), [jpeg()]), "HTTP 422: moment 0: not a JPEG")
    broken = spool.put(meta(2), [jpeg()])
    (broken.path / "event.json").write_text("{not json")
    again = Spool(tmp_path / "spool", 10**8)
    assert len(again) == 0
    reasons = sorted((p / "reason.txt").read_text() for p in (tmp_path / "rejected").iterdir())
    assert reasons[0] == "HTTP 422: moment 0: not a JPEG\n" and reasons[1].startswith("unreadable spool entry")
