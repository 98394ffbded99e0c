"""JSONL or one document served over HTTP(S), with retries before the body starts: JSONL streamed
line by line, a document (PDF, HTML, DOCX, PPTX, Markdown, text) read whole and cut into chunks."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from pathlib import PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx

from connector.chunks import ChunkRecord
from connector.errors import SourceError, SourceUnavailable
from connector.sources._jsonl import DEFAULT_MAX_LINE_BYTES, parse_or_skip, too_long
from connector.sources._skips import SkipLog

if TYPE_CHECKING:
    from connector.chunking import TokenChunker

__all__ = ["HttpJsonlSource", "safe_url"]

_BACKOFF_BASE_S = 0.5
_BACKOFF_CAP_S = 8.0
MAX_DOCUMENT_BYTES = 256 * 1024 * 1024
"""Largest document read from a URL: it is held whole to be parsed."""
# A document's format from its Content-Type, when the URL's path does not name it.
_DOCUMENT_TYPES = {
    "application/pdf": ".pdf",
    "text/html": ".html",
    "application/xhtml+xml": ".html",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": ".pptx",
    "text/markdown": ".md",
}
_JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")


def safe_url(url: str) -> str:
    """The URL without user info, query string or fragment, safe to show and log."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class _Retry(Exception):
    """A failure worth another try: nothing of the body has been consumed yet."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class HttpJsonlSource:
    """JSONL, or one document, fetched with one streaming GET.

    A URL whose path ends in a document's suffix (``.pdf``, ``.html``, ``.docx``, ...), or whose
    answer's Content-Type is one (``application/pdf``, ``text/html``, ...) unless the path ends
    in ``.jsonl``, is read whole (at most :data:`MAX_DOCUMENT_BYTES`) as that document and cut
    by ``chunker``: chunk ids ``<file name>#N``. Anything else is JSONL, streamed.

    Connection errors, timeouts and 5xx/429 answers are retried with exponential backoff and
    jitter as long as no byte of the body has been consumed; a break after that is reported,
    not resumed.

    Attributes:
        name: The source's identity; by default the URL without credentials or query string.
        total_bytes: The Content-Length, once the response has arrived and if it has one.
        bytes_read: Bytes downloaded by the current iteration so far.
        skips: The records the current iteration skipped (malformed, or lines too long).
        truncated: Chunks of a document at the URL longer than a dense model's window.
        cut: Whether the current iteration read a document and cut it into chunks itself.
    """

    def __init__(
        self,
        url: str,
        *,
        name: str | None = None,
        timeout_s: float = 30.0,
        retries: int = 3,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        strict: bool = False,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        chunker: TokenChunker | None = None,
    ) -> None:
        self.url = url
        self.safe_url = safe_url(url)
        self._secrets = _secrets(url)
        try:
            httpx.URL(url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise SourceError(self.safe_url, f"invalid URL: {self._scrub(str(exc))}") from None
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        self.name = name if name is not None else self.safe_url
        self.total_bytes: int | None = None
        self.bytes_read = 0
        self.attempts = 0
        self._timeout_s = timeout_s
        self._retries = retries
        self._transport = transport
        self._sleep = sleep
        self.skips = SkipLog(strict=strict)
        self.max_line_bytes = max_line_bytes
        self.chunker = chunker
        self.truncated = 0
        self.cut = False

    def __iter__(self) -> Iterator[ChunkRecord]:
        self.bytes_read = 0
        self.attempts = 0
        self.truncated = 0
        self.cut = False
        self.skips.reset()
        client = httpx.Client(
            timeout=httpx.Timeout(self._timeout_s), transport=self._transport, follow_redirects=True
        )
        with client:
            for attempt in range(self._retries + 1):
                self.attempts += 1
                try:
                    with client.stream("GET", self.url) as response:
                        self._check_status(response)
                        length = response.headers.get("Content-Length", "")
                        self.total_bytes = int(length) if length.isdigit() else None
                        suffix = self._document_suffix(response)
                        if suffix is None:
                            yield from self._records(response)
                        else:
                            yield from self._document(response, suffix)
                        return
                except _Retry as exc:
                    failure = exc
                except httpx.UnsupportedProtocol as exc:
                    raise SourceError(self.safe_url, self._scrub(str(exc))) from None
                except httpx.TransportError as exc:
                    failure = _Retry(self._reason(exc))
                except httpx.RequestError as exc:  # too many redirects, say: no use trying again
                    raise SourceError(self.safe_url, self._reason(exc)) from None
                if attempt == self._retries:
                    raise SourceUnavailable(self.safe_url, f"could not fetch: {failure.reason}")
                self._sleep(self._backoff(attempt, failure.retry_after))

    def _check_status(self, response: httpx.Response) -> None:
        status = response.status_code
        if status == 429 or status >= 500:
            raise _Retry(f"HTTP {status}", _retry_after(response))
        if status >= 400:
            raise SourceError(self.safe_url, f"HTTP {status} {response.reason_phrase}".rstrip())

    def _document_suffix(self, response: httpx.Response) -> str | None:
        """The document format the URL or its answer names; ``None``: JSONL."""
        from connector.documents import SUFFIXES

        suffix = PurePosixPath(urlsplit(self.url).path).suffix.lower()
        if suffix in SUFFIXES:
            return suffix
        if suffix in _JSONL_SUFFIXES:
            return None
        kind = response.headers.get("Content-Type", "").partition(";")[0].strip().lower()
        return _DOCUMENT_TYPES.get(kind)

    def _document(self, response: httpx.Response, suffix: str) -> Iterator[ChunkRecord]:
        from connector.chunking import TokenChunker
        from connector.documents import UnreadableDocument
        from connector.sources._reading import cut_data

        parts: list[bytes] = []
        size = 0
        try:
            for data in response.iter_bytes():
                parts.append(data)
                size += len(data)
                # Bytes on the wire where the transport counts them (progress against
                # Content-Length), else as decoded.
                self.bytes_read = response.num_bytes_downloaded or size
                if size > MAX_DOCUMENT_BYTES:
                    raise SourceError(
                        self.safe_url, f"document over {MAX_DOCUMENT_BYTES // 2**20} MiB"
                    )
        except httpx.TransportError as exc:
            if self.bytes_read == 0:
                raise _Retry(self._reason(exc)) from None
            raise SourceUnavailable(
                self.safe_url, f"connection lost while reading: {self._reason(exc)}"
            ) from None
        doc_id = PurePosixPath(urlsplit(self.url).path).name or urlsplit(self.url).hostname or ""
        chunker = self.chunker if self.chunker is not None else TokenChunker.for_models({})
        data = b"".join(parts)
        cut = cut_data(chunker, data, suffix, self.safe_url, doc_id, extra={"url": self.safe_url})
        if cut.unread is not None:
            error = cut.unread.error()
            if not isinstance(error, UnreadableDocument):
                raise error
            self.skips.skip(error, document=doc_id)
            return
        self.truncated += cut.truncated
        # Chunks of the model's tokens already: a wrapper that cuts long records has nothing
        # left to count (SplitRecords).
        self.cut = True
        yield from cut.records

    def _records(self, response: httpx.Response) -> Iterator[ChunkRecord]:
        lines = _Lines(self.max_line_bytes)
        body = response.iter_bytes()
        while True:
            try:
                data = next(body, None)
            except httpx.TransportError as exc:
                if self.bytes_read == 0:
                    raise _Retry(self._reason(exc)) from None
                raise SourceUnavailable(
                    self.safe_url,
                    f"connection lost after line {lines.lineno}: {self._reason(exc)}",
                ) from None
            except httpx.RequestError as exc:  # a body that cannot be decoded, say
                raise SourceError(
                    self.safe_url, f"bad response after line {lines.lineno}: {self._reason(exc)}"
                ) from None
            # Raw bytes on the wire, so that progress matches Content-Length even when compressed.
            self.bytes_read = response.num_bytes_downloaded
            pieces = lines.feed(data) if data is not None else lines.end()
            for lineno, raw in pieces:
                yield from self._parse(raw, lineno)
            if data is None:
                return

    def _parse(self, raw: bytes | int, lineno: int) -> Iterator[ChunkRecord]:
        location = f"{self.safe_url}:{lineno}"
        if isinstance(raw, int):
            self.skips.skip(too_long(location, raw, self.max_line_bytes))
            return
        record = parse_or_skip(raw, location, self.skips)
        if record is not None:
            yield record

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        delay = min(_BACKOFF_CAP_S, _BACKOFF_BASE_S * 2**attempt)
        # Jitter spreads out clients that failed together; a server's Retry-After is respected.
        delay = delay / 2 + random.uniform(0, delay / 2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, _BACKOFF_CAP_S))
        return delay

    def _reason(self, exc: httpx.HTTPError) -> str:
        if isinstance(exc, httpx.TimeoutException):
            return f"timed out after {self._timeout_s:g}s"
        message = self._scrub(str(exc)) or type(exc).__name__
        if isinstance(exc, httpx.ConnectError) and "refused" in message.lower():
            return "connection refused"
        return message

    def _scrub(self, message: str) -> str:
        """Remove the URL's credentials from a message that came from httpx or the OS."""
        message = message.replace(self.url, self.safe_url)
        for secret in self._secrets:
            message = message.replace(secret, "***")
        return message


def _secrets(url: str) -> list[str]:
    """The URL's user info and password, raw and decoded, longest first."""
    try:
        userinfo = urlsplit(url).netloc.rpartition("@")[0]
    except ValueError:
        return []
    password = userinfo.partition(":")[2]
    found = {userinfo, unquote(userinfo), password, unquote(password)} - {""}
    return sorted(found, key=len, reverse=True)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    return float(value) if value.isdigit() else None


class _Lines:
    """Cuts a byte stream into numbered lines; a line over the limit comes out as its size."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.lineno = 0
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._overflow = 0  # bytes of a too-long line seen so far, dropped as they come

    def feed(self, data: bytes) -> list[tuple[int, bytes | int]]:
        out: list[tuple[int, bytes | int]] = []
        *complete, rest = data.split(b"\n")
        for part in complete:
            out.append(self._close(part))
        self._add(rest)
        return out

    def end(self) -> list[tuple[int, bytes | int]]:
        if self._pending_size or self._overflow:
            return [self._close(b"")]
        return []

    def _add(self, part: bytes) -> None:
        if self._overflow:
            self._overflow += len(part)
            return
        self._pending.append(part)
        self._pending_size += len(part)
        if self._pending_size > self.limit:
            self._overflow, self._pending, self._pending_size = self._pending_size, [], 0

    def _close(self, part: bytes) -> tuple[int, bytes | int]:
        self._add(part)
        self.lineno += 1
        line: bytes | int
        if self._overflow:
            line, self._overflow = self._overflow, 0
        else:
            line = b"".join(self._pending)
        self._pending, self._pending_size = [], 0
        return self.lineno, line
