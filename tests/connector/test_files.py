"""Files written whole: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from connector._files import write_json_atomic


def test_the_file_is_written_whole_in_a_new_folder(tmp_path: Path) -> None:
    path = tmp_path / "new" / "state.json"
    assert write_json_atomic(path, {"b": 1, "a": [1, 2]}, indent=2) == path
    assert path.read_text() == json.dumps({"a": [1, 2], "b": 1}, indent=2)
    write_json_atomic(path, {"b": 1, "a": 2}, sort_keys=False)
    assert path.read_text() == '{"b": 1, "a": 2}'
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    write_json_atomic(path, {"kept": True})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"not json": object()})
    assert json.loads(path.read_text()) == {"kept": True}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]
