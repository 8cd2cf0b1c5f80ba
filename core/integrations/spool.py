"""Events waiting for the relay, kept on disk until it has them.

    spool = Spool(folder, max_bytes=512 * 2**20)
    entry = spool.put({"camera": ..., "idempotency_key": ...}, [jpeg, jpeg, ...])   # durable on return
    for entry in spool.entries():         # oldest first
        entry.meta, entry.images()
        spool.remove(entry)               # the relay has it
        spool.reject(entry, "422 ...")    # the relay will never take it: kept aside in rejected/

Each entry is a folder (``event.json`` and one JPEG per moment) written under a temporary name,
fsynced and renamed into place, so a crash leaves a whole entry or none. Past ``max_bytes`` the
oldest entries are dropped, each with an error in the log: the bound is what keeps a long relay
outage from filling the disk, and the newest alarms are the ones worth keeping.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

KEEP_REJECTED = 100


@dataclass
class Entry:
    path: Path
    meta: dict[str, Any]
    size: int

    def images(self) -> list[bytes]:
        return [(self.path / name).read_bytes() for name in self.meta["images"]]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# An entry's moments, as JPEG bytes. A name of its own: inside Spool, ``bytes`` is the property.
Images = list[bytes]


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


class Spool:
    def __init__(self, folder: Path, max_bytes: int) -> None:
        self.folder = folder
        self.rejected = folder.parent / "rejected"
        self.max_bytes = max_bytes
        self.folder.mkdir(parents=True, exist_ok=True)
        for leftover in self.folder.glob(".tmp-*"):  # a put cut short by a crash
            shutil.rmtree(leftover, ignore_errors=True)
        for old in self.folder.glob(".old-*"):  # an update cut short between its two renames
            current = self.folder / old.name.removeprefix(".old-")
            if current.exists():
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(old, current)
        self._seq = itertools.count()
        self._entries: dict[str, Entry] = {}
        for path in sorted(p for p in self.folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
            entry = self._load(path)
            if entry is not None:
                self._entries[path.name] = entry

    def _load(self, path: Path) -> Entry | None:
        try:
            meta = json.loads((path / "event.json").read_text(encoding="utf-8"))
            size = sum(f.stat().st_size for f in path.iterdir())
            if not isinstance(meta.get("images"), list):
                raise ValueError("no image list")
            return Entry(path, meta, size)
        except (OSError, ValueError) as exc:
            self._set_aside(path, f"unreadable spool entry: {exc}")
            return None

    @property
    def bytes(self) -> int:
        return sum(e.size for e in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self) -> list[Entry]:
        return [self._entries[name] for name in sorted(self._entries)]

    def _stage(self, name: str, meta: dict[str, Any], images: Images) -> tuple[Path, dict[str, Any], int]:
        tmp = self.folder / f".tmp-{name}"
        tmp.mkdir()
        meta = {**meta, "images": [f"m{i:03d}.jpg" for i in range(len(images))]}
        for file, data in zip(meta["images"], images, strict=True):
            _write(tmp / file, data)
        body = json.dumps(meta).encode()
        _write(tmp / "event.json", body)
        return tmp, meta, len(body) + sum(map(len, images))

    def put(self, meta: dict[str, Any], images: Images) -> Entry:
        name = f"{time.time_ns():020d}-{next(self._seq):06d}"
        tmp, meta, size = self._stage(name, meta, images)
        final = self.folder / name
        os.rename(tmp, final)
        _fsync_dir(self.folder)
        self._entries[name] = entry = Entry(final, meta, size)
        self._bound(keep=name)
        return entry

    def update(self, entry: Entry, meta: dict[str, Any], images: Images) -> Entry:
        """Replace an entry's content (a snapshot fetched later), keeping its place in the queue."""
        name = entry.path.name
        tmp, meta, size = self._stage(name, meta, images)
        old = self.folder / f".old-{name}"
        os.rename(entry.path, old)
        os.rename(tmp, entry.path)  # a crash before this leaves .old-<name>, put back at the next start
        _fsync_dir(self.folder)
        shutil.rmtree(old, ignore_errors=True)
        self._entries[name] = new = Entry(entry.path, meta, size)
        return new

    def _bound(self, keep: str) -> None:
        while self.bytes > self.max_bytes and len(self._entries) > 1:
            oldest = min(n for n in self._entries if n != keep)
            dropped = self._entries.pop(oldest)
            shutil.rmtree(dropped.path, ignore_errors=True)
            log.error(
                "the event queue is over %d MB: dropped the oldest event (%s, camera %s) to make room",
                self.max_bytes // 2**20,
                dropped.meta.get("idempotency_key"),
                dropped.meta.get("camera"),
            )

    def remove(self, entry: Entry) -> None:
        self._entries.pop(entry.path.name, None)
        shutil.rmtree(entry.path, ignore_errors=True)

    def reject(self, entry: Entry, reason: str) -> None:
        self._entries.pop(entry.path.name, None)
        self._set_aside(entry.path, reason)

    def _set_aside(self, path: Path, reason: str) -> None:
        self.rejected.mkdir(parents=True, exist_ok=True)
        target = self.rejected / path.name
        shutil.rmtree(target, ignore_errors=True)
        os.rename(path, target)
        (target / "reason.txt").write_text(reason + "\n", encoding="utf-8")
        log.error("event set aside in %s: %s", target, reason)
        for old in sorted(self.rejected.iterdir())[:-KEEP_REJECTED]:
            shutil.rmtree(old, ignore_errors=True)
