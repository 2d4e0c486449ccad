"""``raygym.train.prefetch``: the same items in the same order, errors where they are read,
and a consumer that stops early stops (and closes) the source."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from raygym.train.prefetch import prefetch


def test_same_items_in_order_prepared() -> None:
    assert list(prefetch(iter(range(50)), depth=3, prepare=lambda i: i * 2)) == \
        [i * 2 for i in range(50)]
    assert list(prefetch(iter([]))) == []


def test_the_source_runs_in_another_thread() -> None:
    def source() -> Iterator[str]:
        yield threading.current_thread().name

    assert list(prefetch(source())) == ["raygym-prefetch"]


def test_source_errors_come_out_in_the_consumer() -> None:
    def source() -> Iterator[int]:
        yield 1
        raise ValueError("bad batch")

    got = []
    with pytest.raises(ValueError, match="bad batch"):
        for item in prefetch(source()):
            got.append(item)
    assert got == [1]


def test_an_early_stop_closes_the_source() -> None:
    closed = threading.Event()

    def source() -> Iterator[int]:
        try:
            yield from range(10**6)
        finally:
            closed.set()

    for item in prefetch(source(), depth=2):
        if item == 3:
            break
    assert closed.wait(5)
    assert not any(t.name == "raygym-prefetch" for t in threading.enumerate())
