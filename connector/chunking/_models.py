"""A model's tokenizer and token window, read from its files (no torch, no weights)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from connector.dense import resolve_model_path


@dataclass(frozen=True, slots=True)
class ModelWindow:
    """The tokens a model reads of one text, special tokens excluded."""

    reference: str
    tokens: int
    max_seq_length: int


def model_file(reference: str, filename: str) -> Path | None:
    """``filename`` of the model ``reference`` (a folder, the bundled MiniLM, or a hub id).

    A hub id is looked up the way sentence-transformers would load it (the local cache first),
    so a model that can be loaded can be measured. ``None``: the model has no such file.

    Raises:
        ValueError: ``reference`` is neither a folder nor a hub id that can be reached.
    """
    where = Path(resolve_model_path(reference))
    if where.is_dir():
        path = where / filename
        return path if path.is_file() else None
    # Imported here: only hub ids need it.
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(reference, filename))
    except EntryNotFoundError as exc:
        # Offline and not cached says nothing about the file: only the hub's answer does.
        if not isinstance(exc, LocalEntryNotFoundError):
            return None
        failure: Exception = exc
    except Exception as exc:  # unreachable hub, unknown repository, bad id: "cannot read it"
        failure = exc
    raise ValueError(f"model {reference!r}: cannot read {filename} ({type(failure).__name__})")


def load_tokenizer(reference: str) -> Tokenizer:
    """The tokenizer of the model ``reference`` from its ``tokenizer.json``.

    Raises:
        ValueError: The model has no ``tokenizer.json`` or it cannot be read.
    """
    path = model_file(reference, "tokenizer.json")
    if path is None:
        raise ValueError(f"model {reference!r} has no tokenizer.json")
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a bare Exception on a malformed file
        raise ValueError(f"model {reference!r}: tokenizer.json unreadable ({exc})") from None


def read_window(reference: str, tokenizer: Tokenizer) -> ModelWindow | None:
    """The window of a sentence-transformers model: ``max_seq_length`` less its special tokens.

    ``None`` when the folder has no ``sentence_bert_config.json`` with a ``max_seq_length``.
    """
    path = model_file(reference, "sentence_bert_config.json")
    if path is None:
        return None
    try:
        max_seq = json.loads(path.read_text(encoding="utf-8"))["max_seq_length"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(max_seq, int) or isinstance(max_seq, bool) or max_seq < 1:
        return None
    # [CLS] and [SEP] for BERT-like models: the model truncates after adding them.
    special = tokenizer.num_special_tokens_to_add(is_pair=False)
    return ModelWindow(reference, max_seq - special, max_seq)
