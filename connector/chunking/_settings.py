"""The chunker the settings ask for, and which models would truncate a chunk."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from connector.chunking._chunker import SettingError, TokenChunker
from connector.dense import vector_name_for
from connector.errors import ConfigError

if TYPE_CHECKING:
    from connector.settings import Settings


def chunker_for(settings: Settings) -> TokenChunker:
    """The chunker of ``[chunking]``, sized to the dense ensemble's smallest window.

    Plug-in encoders have no tokenizer and no window: with none but them, the bundled
    all-MiniLM-L6-v2 tokenizer counts and ``chunking.max_tokens`` (default: its window) sizes.

    Raises:
        ConfigError: A ``[chunking]`` value does not fit the ensemble (the message names the
            key), or a model's tokenizer or config cannot be read.
    """
    chunking = settings.chunking
    models = {
        config.name or vector_name_for(config.model): config.model
        for config in settings.dense.models
        if config.model is not None
    }
    try:
        return TokenChunker.for_models(
            models,
            max_tokens=chunking.max_tokens,
            overlap_tokens=chunking.overlap_tokens,
            tokenizer=chunking.tokenizer,
        )
    except SettingError as exc:
        key = f"chunking.{exc.key}" if exc.key else "dense.models"
        raise ConfigError(f"bad configuration: {key}: {exc}") from None


def truncated(tokens: int, windows: Mapping[str, int]) -> tuple[str, ...]:
    """The models, by name, whose window is shorter than a chunk of ``tokens`` tokens.

    Args:
        tokens: The chunk's tokens (:attr:`Chunk.tokens`).
        windows: Usable tokens per model (:attr:`TokenChunker.windows`). The count comes from
            the chunker's tokenizer, so for a model with another tokenizer it is an estimate.
    """
    return tuple(name for name, window in windows.items() if tokens > window)
