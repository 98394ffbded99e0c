"""Settings: file < environment < flags, clear errors, and the example file documents every key."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from connector.errors import ConfigError
from connector.settings import Settings, load_settings
from tests.paths import REPO

EXAMPLE = REPO / "config.example.toml"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(__import__("os").environ):
        if name.startswith("CONNECTOR_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults_without_any_file() -> None:
    settings = load_settings()
    assert settings.qdrant.collection == "chunks"
    assert settings.qdrant_path == Path(".connector") / "qdrant"
    assert settings.sparse.enabled is True
    assert [m.model for m in settings.dense.models] == ["all-MiniLM-L6-v2"]


def test_file_then_environment_then_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write(
        tmp_path / "c.toml",
        '[qdrant]\ncollection = "from-file"\ntimeout_s = 5\nretries = 7\n'
        '[dense]\nmodels = ["m1", {model = "m2", name = "two"}]\n',
    )
    monkeypatch.setenv("CONNECTOR_QDRANT__TIMEOUT_S", "9")
    monkeypatch.setenv("CONNECTOR_QDRANT__COLLECTION", "from-env")
    monkeypatch.setenv("CONNECTOR_STATE_DIR", str(tmp_path / "state"))
    settings = load_settings(config, {"qdrant": {"collection": "from-flag"}})
    assert settings.qdrant.collection == "from-flag"
    assert settings.qdrant.timeout_s == 9
    assert settings.qdrant.retries == 7
    assert settings.state_dir == tmp_path / "state"
    assert settings.qdrant_path == tmp_path / "state" / "qdrant"
    assert [(m.model, m.name) for m in settings.dense.models] == [("m1", None), ("m2", "two")]


def test_connector_toml_in_working_directory_is_read_by_default(tmp_path: Path) -> None:
    write(tmp_path / "connector.toml", "[sparse]\nenabled = false\n")
    assert load_settings().sparse.enabled is False


def test_bad_value_names_the_key(tmp_path: Path) -> None:
    config = write(tmp_path / "c.toml", "[qdrant]\ntimeout_s = -1\n")
    with pytest.raises(ConfigError, match=r"qdrant\.timeout_s: Input should be greater than 0"):
        load_settings(config)


def test_bad_environment_value_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNECTOR_SYNC__BATCH_SIZE", "lots")
    with pytest.raises(ConfigError, match=r"sync\.batch_size"):
        load_settings()


def test_unknown_key_is_an_error(tmp_path: Path) -> None:
    config = write(tmp_path / "c.toml", '[qdrant]\ncolection = "typo"\n')
    with pytest.raises(ConfigError, match=r"qdrant\.colection: unknown setting"):
        load_settings(config)


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="bad.toml"):
        load_settings(write(tmp_path / "bad.toml", "[qdrant\n"))


def test_api_key_is_kept_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNECTOR_QDRANT__API_KEY", "s3cr3t-key-value")
    settings = load_settings()
    assert settings.qdrant.api_key is not None
    assert settings.qdrant.api_key.get_secret_value() == "s3cr3t-key-value"
    assert "s3cr3t" not in repr(settings) and "s3cr3t" not in str(settings.model_dump())


def test_url_must_be_http() -> None:
    with pytest.raises(ConfigError, match=r"qdrant\.url: Value error, must start with http"):
        load_settings(None, {"qdrant": {"url": "localhost:6333"}})


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys += _keys(annotation, f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


def test_example_file_documents_every_key_and_loads_to_the_defaults() -> None:
    text = EXAMPLE.read_text()
    for key in _keys(Settings):
        leaf = key.rsplit(".", 1)[-1]
        assert re.search(rf"^#? ?{leaf} =", text, re.MULTILINE), (
            f"{key} is not in config.example.toml"
        )
    tomllib.loads(text)
    from_example = load_settings(EXAMPLE)
    assert from_example.model_dump() == load_settings().model_dump()


def test_gpu_section_defaults_environment_and_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    gpu = load_settings().gpu
    assert (gpu.enabled, gpu.device_ids, gpu.min_batch_size) == (False, None, 4)
    assert (gpu.vram_hard_cap_gb, gpu.vram_soft_limit_gb) == (12.0, 10.0)
    monkeypatch.setenv("CONNECTOR_GPU__ENABLED", "true")
    monkeypatch.setenv("CONNECTOR_GPU__DEVICE_IDS", "[1, 3]")
    gpu = load_settings(None, {"gpu": {"lease_timeout_s": 2}}).gpu
    assert (gpu.enabled, gpu.device_ids, gpu.lease_timeout_s) == (True, [1, 3], 2.0)
    with pytest.raises(ConfigError, match=r"gpu: Value error, vram_soft_limit_gb must not exceed"):
        load_settings(None, {"gpu": {"vram_soft_limit_gb": 20}})
    with pytest.raises(ConfigError, match=r"gpu\.device_ids\.0"):
        load_settings(None, {"gpu": {"device_ids": [-1]}})
    with pytest.raises(ConfigError, match=r"sparse\.use_gpu: unknown setting"):
        load_settings(None, {"sparse": {"use_gpu": True}})
