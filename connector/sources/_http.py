"""JSONL served over HTTP(S), streamed line by line with retries before the body starts."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx

from connector.chunks import ChunkRecord
from connector.errors import SourceError, SourceUnavailable
from connector.sources._jsonl import DEFAULT_MAX_LINE_BYTES, parse_or_skip, too_long
from connector.sources._skips import SkipLog

__all__ = ["HttpJsonlSource", "safe_url"]

_BACKOFF_BASE_S = 0.5
_BACKOFF_CAP_S = 8.0


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
    """A JSONL document fetched with one streaming GET.

    Connection errors, timeouts and 5xx/429 answers are retried with exponential backoff and
    jitter as long as no byte of the body has been consumed; a break after that is reported,
    not resumed.

    Attributes:
        name: The source's identity; by default the URL without credentials or query string.
        total_bytes: The Content-Length, once the response has arrived and if it has one.
        bytes_read: Bytes downloaded by the current iteration so far.
        skips: The records the current iteration skipped (malformed, or lines too long).
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

    def __iter__(self) -> Iterator[ChunkRecord]:
        self.bytes_read = 0
        self.attempts = 0
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
                        yield from self._records(response)
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
