"""Whole-file JSON replaces: the new content or the old, and nothing left beside them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from connector._files import write_json_atomic


def test_a_file_is_replaced_whole_with_no_temporary_left(tmp_path: Path) -> None:
    path = tmp_path / "aliases.json"
    write_json_atomic(path, {"b": 1, "a": 2})
    assert path.read_text(encoding="utf-8") == '{"a": 2, "b": 1}'
    write_json_atomic(path, {"b": [1]}, indent=2, sort_keys=False)
    assert json.loads(path.read_text(encoding="utf-8")) == {"b": [1]}
    assert "\n  " in path.read_text(encoding="utf-8")
    assert [p.name for p in tmp_path.iterdir()] == ["aliases.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "collection.json"
    write_json_atomic(path, {"kept": True})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"bad": object()})
    assert json.loads(path.read_text(encoding="utf-8")) == {"kept": True}
    assert [p.name for p in tmp_path.iterdir()] == ["collection.json"]
