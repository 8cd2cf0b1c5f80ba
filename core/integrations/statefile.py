"""A small JSON document kept on disk, replaced atomically on each save.

    state = StateFile(folder / "state.json")      # {} when the file does not exist yet
    state.data["cursor"] = "..."
    state.save()                                  # temporary file, fsync, rename: a crash leaves the old or the new

An unreadable file is set aside (``state.json.corrupt-<time>``) with an error in the log, never
overwritten: what it held may still be worth a look.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class StateFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = self._load()

    def _load(self) -> dict[str, Any]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            return data
        except ValueError as exc:
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            os.replace(self.path, aside)
            log.error("state file %s is unreadable (%s); moved to %s, starting afresh", self.path, exc, aside)
            return {}

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(self.data, fh, separators=(",", ":"))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)


class FolderBusy(Exception):
    """Another process uses this state folder."""


def lock_folder(folder: Path):
    """Hold an exclusive lock on ``folder`` for as long as the returned file stays open.

    Two bridges on one folder would post the same queue twice and fight over the cursor.
    """
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / ".lock", "w")  # noqa: SIM115 - held open for the life of the process
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise FolderBusy(f"another process uses {folder}; give each bridge its own INSANE_BRIDGE_STATE_DIR") from None
    return handle
