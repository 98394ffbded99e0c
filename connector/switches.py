"""Runtime switches persisted in the state folder, read by every sync at start.

They live in a small JSON file, not in Qdrant: the dashboard and `connector sparse` must be able
to flip them while a sync holds the embedded Qdrant folder.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from connector._files import write_json_atomic
from connector.errors import ConfigError

__all__ = ["FILE_NAME", "RuntimeState", "load_runtime", "save_runtime", "sparse_enabled"]

FILE_NAME = "runtime.json"


@dataclass(slots=True)
class RuntimeState:
    """Operator switches; ``None`` means never set (the settings decide)."""

    sparse_enabled: bool | None = None
    updated_at: str | None = None


def _path(state_dir: Path) -> Path:
    return Path(state_dir) / FILE_NAME


def load_runtime(state_dir: Path) -> RuntimeState:
    """The persisted switches (all unset when the file does not exist).

    Raises:
        ConfigError: The file exists but is not what this version wrote.
    """
    path = _path(state_dir)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return RuntimeState()
    except (OSError, ValueError) as exc:
        raise ConfigError(f"runtime switches {path}: unreadable ({exc})") from None
    enabled = data.get("sparse_enabled") if isinstance(data, dict) else None
    if enabled is not None and not isinstance(enabled, bool):
        raise ConfigError(f"runtime switches {path}: sparse_enabled must be true or false")
    return RuntimeState(sparse_enabled=enabled, updated_at=data.get("updated_at"))


def save_runtime(state_dir: Path, state: RuntimeState) -> RuntimeState:
    """Persist ``state`` atomically (a reader never sees half a file)."""
    state.updated_at = datetime.now(UTC).isoformat(timespec="seconds")
    write_json_atomic(_path(state_dir), asdict(state), indent=2, sort_keys=False)
    return state


def sparse_enabled(state_dir: Path, configured: bool, flag: bool | None) -> tuple[bool, str]:
    """Whether this run computes sparse vectors, and which switch decided.

    A flag beats the persisted switch, which beats the configured default.
    """
    if flag is not None:
        return flag, "flag"
    persisted = load_runtime(state_dir).sparse_enabled
    if persisted is not None:
        return persisted, "switch"
    return configured, "settings"
