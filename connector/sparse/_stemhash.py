"""Pieces shared by the stem-and-hash sparse models (both BM25 flavours, BM42)."""

from __future__ import annotations

import math

import mmh3

__all__ = ["CACHE_LIMIT", "IdCache", "bm25_params", "format_number"]

# Bounds the per-instance caches so a corpus full of unique tokens (hashes, ids, numbers)
# cannot grow memory without limit; a full cache is simply dropped and refilled.
CACHE_LIMIT = 1 << 19


def format_number(value: float) -> str:
    """Formats a parameter for a signature: "256" for integral values, else shortest repr."""
    return str(int(value)) if value.is_integer() else repr(value)


def _finite(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    # NaN/inf would silently turn every value into NaN (or 0), never what the caller meant.
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


def bm25_params(k: float, b: float, avg_len: float) -> tuple[float, float, float]:
    """Checked BM25 parameters as floats.

    Raises:
        ValueError: A parameter is not a finite number in range; the message names it.
    """
    k, b, avg_len = _finite("k", k), _finite("b", b), _finite("avg_len", avg_len)
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k!r}")
    if not 0 <= b <= 1:
        raise ValueError(f"b must be between 0 and 1, got {b!r}")
    if avg_len <= 0:
        raise ValueError(f"avg_len must be > 0, got {avg_len!r}")
    return k, b, avg_len


class IdCache(dict[str, int]):
    """stem -> term id ``abs(mmh3(stem))``, filled lazily on a miss (a dict hit beats mmh3)."""

    __slots__ = ()

    def __missing__(self, stem: str) -> int:
        term_id = abs(mmh3.hash(stem))
        if len(self) >= CACHE_LIMIT:
            self.clear()
        self[stem] = term_id
        return term_id
