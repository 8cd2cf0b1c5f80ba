"""The state file: saved whole or not at all, never overwritten when unreadable; one process per folder."""

from __future__ import annotations

import pytest

from core.integrations.statefile import FolderBusy, StateFile, lock_folder


def test_an_unreadable_state_file_is_set_aside_not_overwritten(tmp_path, caplog) -> None:
    path = tmp_path / "state.json"
    path.write_text('{"cursor": ')
    state = StateFile(path)
    assert state.data == {} and "is unreadable" in caplog.text
    aside = list(tmp_path.glob("state.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_text() == '{"cursor": '
    state.data["cursor"] = "c"
    state.save()
    assert StateFile(path).data == {"cursor": "c"}


def test_a_folder_is_held_by_one_process_at_a_time(tmp_path) -> None:
    held = lock_folder(tmp_path / "bridge")
    try:
        with pytest.raises(FolderBusy, match="another process uses"):
            lock_folder(tmp_path / "bridge")
    finally:
        held.close()
    lock_folder(tmp_path / "bridge").close()
