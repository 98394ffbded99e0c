"""The overlapped stages of a sync: order, overlap, bounded read-ahead, failures and Ctrl-C."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from connector.pipeline._flow import Flow, Stage

WAIT_S = 10.0


def numbers(count: int, read: list[int]) -> Iterator[int]:
    for n in range(count):
        read.append(n)
        yield n


def test_items_reach_the_consumer_in_order_through_every_stage() -> None:
    out: list[int] = []
    flow: Flow[int] = Flow()

    flow.run(
        ("read", lambda: numbers(50, [])),
        [Stage("double", lambda n: n * 2), Stage("inc", lambda n: n + 1)],
        out.append,
    )

    assert out == [2 * n + 1 for n in range(50)]
    assert set(flow.busy_s) == {"read", "double", "inc"}


def test_the_next_item_is_read_while_a_stage_works_on_one() -> None:
    second_read = threading.Event()

    def encode(n: int) -> int:
        # In turn this would wait forever: the second item is read only after the first is done.
        if n == 0:
            assert second_read.wait(WAIT_S), "the producer did not read ahead"
        return n

    def produce() -> Iterator[int]:
        yield 0
        second_read.set()
        yield 1

    out: list[int] = []
    Flow[int]().run(("read", produce), [Stage("dense", encode)], out.append)

    assert out == [0, 1]


def test_in_turn_reads_the_next_item_only_after_the_last_was_consumed() -> None:
    read: list[int] = []
    log: list[tuple[int, int]] = []

    Flow[int](depth=0).run(
        ("read", lambda: numbers(5, read)), [], lambda n: log.append((n, len(read)))
    )

    assert log == [(n, n + 1) for n in range(5)]


def test_the_producer_reads_only_a_bounded_way_ahead() -> None:
    read: list[int] = []
    lead: list[int] = []
    release = threading.Event()

    def slow(n: int) -> int:
        if n == 0:
            release.wait(0.5)  # long enough for the producer to fill every queue
        return n

    def consume(n: int) -> None:
        lead.append(len(read) - n)

    Flow[int](depth=2).run(("read", lambda: numbers(100, read)), [Stage("dense", slow)], consume)

    # Two queues of 2, one item in the stage, one in the producer's hand: never the whole input.
    assert max(lead) <= 7


class Boom(Exception):
    pass


def test_a_failing_stage_lets_earlier_items_finish_stops_the_producer_and_raises_its_error() -> (
    None
):
    read: list[int] = []
    out: list[int] = []
    error = Boom("window 3")

    def encode(n: int) -> int:
        if n == 3:
            raise error
        return n

    with pytest.raises(Boom) as info:
        Flow[int]().run(
            ("read", lambda: numbers(10_000, read)), [Stage("dense", encode)], out.append
        )

    assert info.value is error  # the original error, raised in the caller's thread
    assert out == [0, 1, 2]
    assert len(read) < 100


def test_a_failing_producer_lets_what_it_read_finish_then_raises() -> None:
    out: list[int] = []

    def produce() -> Iterator[int]:
        yield 0
        yield 1
        raise Boom("unreadable")

    with pytest.raises(Boom):
        Flow[int]().run(("read", produce), [Stage("dense", lambda n: n)], out.append)

    assert out == [0, 1]


@pytest.mark.parametrize("error", [Boom("refused"), KeyboardInterrupt()])
def test_a_failing_or_interrupted_consumer_stops_every_stage(error: BaseException) -> None:
    read: list[int] = []
    encoded: list[int] = []

    def encode(n: int) -> int:
        encoded.append(n)
        return n

    def consume(n: int) -> None:
        if n == 2:
            raise error

    with pytest.raises(type(error)):
        Flow[int]().run(("read", lambda: numbers(10_000, read)), [Stage("dense", encode)], consume)

    settled = (len(read), len(encoded))
    assert settled[0] < 100 and settled[1] < 100
    threading.Event().wait(0.2)
    assert (len(read), len(encoded)) == settled  # nothing runs on after the run ended
