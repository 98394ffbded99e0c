"""Files the connector replaces whole: a reader sees the old content or the new, never a mix."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["write_json_atomic"]


def write_json_atomic(
    path: str | os.PathLike[str], data: Any, *, indent: int | None = None, sort_keys: bool = True
) -> Path:
    """Write ``data`` as JSON to ``path`` in one step; returns the path.

    The JSON goes to a temporary file in the same folder (so that the rename stays on one file
    system), which then replaces ``path``. There is no fsync: the replace protects readers from a
    half-written file, not the file from a power cut.

    Args:
        path: The file to replace; its folder is created when missing.
        data: Anything ``json.dump`` takes.
        indent: As ``json.dump``'s (``None``: one line).
        sort_keys: As ``json.dump``'s.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}-", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=indent, sort_keys=sort_keys)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return target
