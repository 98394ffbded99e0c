"""A Qdrant client that fails on cue: wraps a real (embedded) client and injects the failures a
network and a server produce, raised as the same exception types qdrant-client raises."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from qdrant_client import QdrantClient
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse


@dataclass(frozen=True)
class Fault:
    """One kind of failure.

    Attributes:
        make: Builds the exception to raise.
        applied: The request reaches Qdrant and takes effect before the failure (an answer lost
            on the way back); otherwise it fails before reaching it.
    """

    make: Callable[[], BaseException]
    applied: bool = False


def timeout(applied: bool = False) -> Fault:
    return Fault(lambda: ResponseHandlingException(httpx.ReadTimeout("timed out")), applied)


def dropped_connection(applied: bool = False) -> Fault:
    return Fault(
        lambda: ResponseHandlingException(
            httpx.RemoteProtocolError("Server disconnected without sending a response.")
        ),
        applied,
    )


def http_status(status: int, applied: bool = False) -> Fault:
    def make() -> BaseException:
        return UnexpectedResponse(
            status_code=status,
            reason_phrase=httpx.codes.get_reason_phrase(status),
            content=b'{"status": {"error": "injected"}}',
            headers=httpx.Headers(),
        )

    return Fault(make, applied)


class FaultyClient:
    """Delegates everything to ``inner``; calls scheduled with :meth:`fail` fail instead.

    Attributes:
        calls: How many times each method was called (failed calls included).
        requests: Each call in order: (method, positional arguments).
        injected: How many failures were raised, per method.
    """

    def __init__(self, inner: QdrantClient) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()
        self.requests: list[tuple[str, tuple[Any, ...]]] = []
        self.injected: Counter[str] = Counter()
        self._plan: dict[str, list[tuple[int, int | None, Fault]]] = {}

    def fail(self, method: str, fault: Fault, *, on_call: int = 1, times: int | None = 1) -> None:
        """Make ``method`` fail from its ``on_call``-th call after this one on, ``times`` times
        in a row (``None``: every call from then on)."""
        start = self.calls[method] + on_call
        self._plan.setdefault(method, []).append((start, times, fault))

    def heal(self) -> None:
        """No more failures."""
        self._plan.clear()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            self.requests.append((name, args))
            fault = self._due(name, self.calls[name])
            if fault is None:
                return attr(*args, **kwargs)
            self.injected[name] += 1
            if fault.applied:
                attr(*args, **kwargs)
            raise fault.make()

        return call

    def _due(self, name: str, number: int) -> Fault | None:
        for start, times, fault in self._plan.get(name, []):
            if number >= start and (times is None or number < start + times):
                return fault
        return None
