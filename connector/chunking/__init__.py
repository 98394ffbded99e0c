"""Chunks sized in the dense model's own tokens, cut on structure first.

:class:`TokenChunker` cuts a text, or a document read into blocks, into :class:`Chunk` objects of
at most ``max_tokens`` tokens of a Hugging Face tokenizer: at paragraph breaks where it can, else
at line breaks, sentences, words, and as a last resort inside a word (each section is tokenized
once and the cuts read off its offsets). :func:`chunker_for` builds the one the settings ask
for, sized to the smallest window of the dense ensemble; :func:`truncated` says which models
would still cut a chunk short.
"""

from connector.chunking._chunker import Chunk, TokenChunker
from connector.chunking._settings import chunker_for, truncated

__all__ = ["Chunk", "TokenChunker", "chunker_for", "truncated"]
