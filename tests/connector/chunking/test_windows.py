"""The window from the model's files, the [chunking] settings, and which models truncate."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from connector.chunking import TokenChunker, chunker_for, truncated
from connector.dense import DEFAULT_DENSE_MODEL, resolve_model_path
from connector.errors import ConfigError
from connector.settings import load_settings

PLUGIN = {"encoder": "connector.dense_plugins:RateEncoder", "name": "vec"}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("CONNECTOR_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def model_folder(where: Path, max_seq_length: int | None, tokenizer: bool = True) -> str:
    """A model folder holding only what the chunker reads: MiniLM's tokenizer and a config."""
    bundled = Path(resolve_model_path(DEFAULT_DENSE_MODEL))
    where.mkdir()
    if tokenizer:
        shutil.copy(bundled / "tokenizer.json", where / "tokenizer.json")
    if max_seq_length is not None:
        config = {"max_seq_length": max_seq_length, "do_lower_case": False}
        (where / "sentence_bert_config.json").write_text(json.dumps(config))
    return str(where)


def test_building_and_using_a_chunker_imports_no_torch() -> None:
    code = (
        "import sys\n"
        "from connector.chunking import chunker_for\n"
        "from connector.settings import load_settings\n"
        "chunker = chunker_for(load_settings())\n"
        "assert chunker.chunk_text('Lift and drag. ' * 500)\n"
        "heavy = {'torch', 'transformers', 'sentence_transformers'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_default_window_is_minilms_less_its_special_tokens() -> None:
    chunker = chunker_for(load_settings())
    assert (chunker.max_tokens, chunker.overlap_tokens) == (254, 32)  # 256 less [CLS], [SEP]
    assert chunker.windows == {"all-minilm-l6-v2": 254}


def test_the_smallest_window_of_the_ensemble_sizes_the_chunks(tmp_path: Path) -> None:
    short = model_folder(tmp_path / "short", 128)
    unknown = model_folder(tmp_path / "unknown", None)  # no sentence_bert_config.json
    models = ["all-MiniLM-L6-v2", {"model": short, "name": "short"}, {"model": unknown}, PLUGIN]
    chunker = chunker_for(load_settings(None, {"dense": {"models": models}}))
    assert chunker.max_tokens == 126
    assert chunker.windows == {"all-minilm-l6-v2": 254, "short": 126}
    chunks = chunker.chunk_text("The wing lifts the aircraft. " * 300)
    assert max(c.tokens for c in chunks) <= 126


def test_an_explicit_size_within_the_window(tmp_path: Path) -> None:
    chunker = chunker_for(
        load_settings(None, {"chunking": {"max_tokens": 100, "overlap_tokens": 0}})
    )
    assert (chunker.max_tokens, chunker.overlap_tokens) == (100, 0)
    other = model_folder(tmp_path / "other", 512)
    chunker = chunker_for(load_settings(None, {"chunking": {"tokenizer": other}}))
    assert chunker.max_tokens == 254  # the tokenizer counts; the ensemble's window still sizes


def test_plugins_alone_use_minilms_tokenizer_and_the_configured_size() -> None:
    plugins = {"dense": {"models": [PLUGIN]}}
    chunker = chunker_for(load_settings(None, plugins))
    assert (chunker.max_tokens, chunker.windows) == (254, {})
    chunker = chunker_for(load_settings(None, {**plugins, "chunking": {"max_tokens": 1000}}))
    assert chunker.max_tokens == 1000
    assert chunker.count_tokens("hello world") == 2


def test_settings_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNECTOR_CHUNKING__MAX_TOKENS", "64")
    monkeypatch.setenv("CONNECTOR_CHUNKING__SPLIT_RECORDS", "false")
    chunking = load_settings().chunking
    assert (chunking.max_tokens, chunking.overlap_tokens, chunking.split_records) == (64, 32, False)
    assert chunking.tokenizer is None
    assert load_settings(None, {}).chunking.split_records is False


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"max_tokens": 4}, r"chunking\.max_tokens: Input should be greater than or equal to 8"),
        ({"overlap_tokens": -1}, r"chunking\.overlap_tokens: Input should be greater than"),
        ({"max_tokens": 32}, r"chunking: Value error, overlap_tokens must be smaller than max_"),
        ({"tokenizer": ""}, r"chunking\.tokenizer: String should have at least 1 character"),
        ({"chunk_size": 10}, r"chunking\.chunk_size: unknown setting"),
    ],
)
def test_bad_settings_name_the_key(values: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(None, {"chunking": values})


def test_a_size_over_the_window_names_both(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError,
        match=r"chunking\.max_tokens: max_tokens = 300 exceeds the window of dense model "
        r"'all-minilm-l6-v2' \(.*\): 254 tokens \(max_seq_length 256 less its special tokens\)",
    ):
        chunker_for(load_settings(None, {"chunking": {"max_tokens": 300}}))
    with pytest.raises(ConfigError, match=r"chunking\.overlap_tokens: overlap_tokens = 254: .*254"):
        chunker_for(load_settings(None, {"chunking": {"overlap_tokens": 254}}))


def test_unreadable_model_files_name_the_model(tmp_path: Path) -> None:
    bare = model_folder(tmp_path / "bare", 128, tokenizer=False)
    with pytest.raises(
        ConfigError, match=r"dense\.models: dense model 'bare': .* no tokenizer\.json"
    ):
        chunker_for(load_settings(None, {"dense": {"models": [{"model": bare, "name": "bare"}]}}))
    with pytest.raises(ConfigError, match=r"chunking\.tokenizer: tokenizer: model .* no tokenizer"):
        chunker_for(load_settings(None, {"chunking": {"tokenizer": bare}}))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "tokenizer.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"chunking\.tokenizer: .*tokenizer\.json unreadable"):
        chunker_for(load_settings(None, {"chunking": {"tokenizer": str(tmp_path / "broken")}}))


def test_a_hub_id_that_cannot_be_reached_names_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ConfigError, match=r"chunking\.tokenizer: .*'nobody/no-such-model': cannot"):
        chunker_for(load_settings(None, {"chunking": {"tokenizer": "nobody/no-such-model"}}))


def test_a_bad_max_seq_length_is_no_window(tmp_path: Path) -> None:
    folder = Path(model_folder(tmp_path / "odd", 128))
    for bad in ('{"max_seq_length": "256"}', '{"max_seq_length": true}', "[1]", "{"):
        (folder / "sentence_bert_config.json").write_text(bad)
        assert TokenChunker.for_models({"odd": str(folder)}).windows == {}


def test_truncated_names_the_models_whose_window_is_shorter() -> None:
    windows = {"minilm": 254, "e5": 510}
    assert truncated(254, windows) == ()
    assert truncated(255, windows) == ("minilm",)
    assert truncated(600, windows) == ("minilm", "e5")
    assert truncated(10_000, {}) == ()


def test_what_the_hub_answers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import huggingface_hub
    from huggingface_hub.errors import EntryNotFoundError

    tokenizer = Path(model_folder(tmp_path / "cached", None)) / "tokenizer.json"

    def download(repo_id: str, filename: str) -> str:
        if repo_id == "down/model":
            raise ConnectionError("no route")
        if filename == "sentence_bert_config.json":
            raise EntryNotFoundError("404")  # the hub says: no such file
        return str(tokenizer)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    chunker = TokenChunker.for_models({"hub": "some/model"}, max_tokens=500)
    assert (chunker.max_tokens, chunker.windows) == (500, {})
    assert chunker.count_tokens("hello world") == 2  # its own tokenizer counts
    with pytest.raises(ValueError, match=r"'down/model': cannot read tokenizer\.json \(Connection"):
        TokenChunker.for_models({"down": "down/model"})


def test_without_a_window_the_first_models_tokenizer_counts(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers.models import WordLevel

    digits = Tokenizer(WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    digits.pre_tokenizer = pre_tokenizers.Digits(individual_digits=True)
    (tmp_path / "digits").mkdir()
    digits.save(str(tmp_path / "digits" / "tokenizer.json"))
    chunker = TokenChunker.for_models({"digits": str(tmp_path / "digits")}, max_tokens=64)
    assert (chunker.count_tokens("12345"), chunker.windows) == (5, {})
    assert chunker_for(load_settings()).count_tokens("12345") == 2


def test_no_window_anywhere_asks_for_max_tokens(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # As if the bundled model stated no max_seq_length: nothing sizes the chunks.
    from connector.chunking import _chunker

    monkeypatch.setattr(_chunker, "DEFAULT_DENSE_MODEL", model_folder(tmp_path / "bare", None))
    with pytest.raises(ConfigError, match=r"chunking\.max_tokens: .*states its window; set it"):
        chunker_for(load_settings(None, {"dense": {"models": [PLUGIN]}}))
    plugins = {"dense": {"models": [PLUGIN]}, "chunking": {"max_tokens": 64}}
    assert chunker_for(load_settings(None, plugins)).max_tokens == 64
