"""The bounded channel: FIFO, drops and counts when full, closes, wakes its reader."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hardlight_core._channel import Channel


def test_items_come_out_in_order() -> None:
    channel: Channel[int] = Channel(3)
    assert channel.get() is None
    for item in (1, 2, 3):
        assert channel.put(item)
    assert len(channel) == 3
    assert [channel.get(), channel.get(), channel.get(), channel.get()] == [1, 2, 3, None]


def test_a_full_channel_drops_the_new_item_and_counts_it() -> None:
    channel: Channel[str] = Channel(2)
    assert channel.put("a") and channel.put("b")
    assert channel.put("c") is False
    assert channel.put("d") is False
    assert channel.dropped == 2
    assert [channel.get(), channel.get(), channel.get()] == ["a", "b", None]  # the old ones kept
    assert channel.put("e")  # room again
    assert channel.get() == "e"


def test_drops_are_logged_on_the_first_and_every_thousandth(
    caplog: pytest.LogCaptureFixture,
) -> None:
    channel: Channel[int] = Channel(1, "test queue")
    channel.put(0)
    with caplog.at_level(logging.WARNING, logger="hardlight"):
        for i in range(2000):
            channel.put(i)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3  # drops 1, 1000 and 2000
    assert "test queue" in warnings[0].getMessage()
    assert "dropped 2000" in warnings[-1].getMessage()


def test_close_refuses_new_items_but_keeps_what_is_left() -> None:
    channel: Channel[int] = Channel(5)
    channel.put(1)
    channel.close()
    assert channel.closed and not channel.exhausted
    assert channel.put(2) is False
    assert channel.dropped == 0  # refused after close, not dropped for lack of room
    assert channel.get() == 1
    assert channel.exhausted
    assert channel.get() is None


def test_on_put_wakes_on_each_accepted_put_and_on_close() -> None:
    channel: Channel[int] = Channel(1)
    wakes: list[int] = []
    channel.on_put = lambda: wakes.append(len(channel))
    channel.put(1)
    assert wakes == [1]  # called after the item is in
    channel.put(2)  # full: dropped, nothing to wake for
    assert wakes == [1]
    channel.close()
    assert wakes == [1, 1]
    channel.put(3)  # closed: refused
    assert wakes == [1, 1]


@pytest.mark.parametrize("size", [0, -1])
def test_a_channel_holds_at_least_one_item(size: int) -> None:
    with pytest.raises(ValueError):
        Channel(size)


@given(st.integers(1, 8), st.lists(st.one_of(st.integers(0, 99), st.none()), max_size=60))
def test_never_holds_more_than_maxsize_and_keeps_order(size: int, ops: list[int | None]) -> None:
    # None means "get"; an integer means "put it"
    channel: Channel[int] = Channel(size)
    model: list[int] = []
    dropped = 0
    for op in ops:
        if op is None:
            assert channel.get() == (model.pop(0) if model else None)
        elif len(model) < size:
            assert channel.put(op)
            model.append(op)
        else:
            assert not channel.put(op)
            dropped += 1
        assert len(channel) == len(model) <= size
    assert channel.dropped == dropped
