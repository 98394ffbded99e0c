"""Keeps secrets out of everything the connector prints or logs.

Secrets are masked where they enter (``SecretStr`` settings, URLs without credentials); this is
the second line: any message that still carries a registered secret, such as a server error that
echoes request headers back, has it replaced before it is shown.
"""

from __future__ import annotations

import logging

__all__ = ["MASK", "RedactingFilter", "redact", "register_secret"]

MASK = "***"
_SECRETS: set[str] = set()


def register_secret(secret: str | None) -> None:
    """Mask ``secret`` in every message from now on (values shorter than 4 are ignored: they
    would mask ordinary words)."""
    if secret and len(secret) >= 4:
        _SECRETS.add(secret)


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by ``***``."""
    for secret in sorted(_SECRETS, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class RedactingFilter(logging.Filter):
    """A handler filter: formats the record's message once and masks secrets in it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info, record.exc_text = None, text
        return True
