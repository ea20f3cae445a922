"""Readers of the core's channels: a subscription closed or dropped stops receiving, so
events go to live subscribers (or wait for the next one) and nothing piles up."""

from __future__ import annotations

import gc

from hardlight_core import Channel, EventDelivered, Topic
from hardlight_support import BlockingChannelReader, ChannelReader


class _Producer:
    """Stands in for the client driver: a list of subscriber channels."""

    def __init__(self) -> None:
        self.channels: list[Channel[EventDelivered]] = []

    def subscribe(self) -> Channel[EventDelivered]:
        channel: Channel[EventDelivered] = Channel(10, "test")
        self.channels.append(channel)
        return channel

    def unsubscribe(self, channel: Channel[EventDelivered]) -> None:
        self.channels.remove(channel)
        channel.close()


def test_a_dropped_or_closed_reader_is_taken_off_its_producer() -> None:
    for reader_type in (ChannelReader, BlockingChannelReader):
        producer = _Producer()
        reader = reader_type(producer.subscribe(), on_close=producer.unsubscribe)
        kept = reader_type(producer.subscribe(), on_close=producer.unsubscribe)
        assert len(producer.channels) == 2
        del reader  # an `async for` left behind: CPython frees it at once
        gc.collect()
        assert len(producer.channels) == 1
        with kept:
            event = EventDelivered(Topic.from_str("t"), b"")
            producer.channels[0].put(event)
        assert producer.channels == []  # closed by the with block


def test_the_channel_does_not_keep_its_reader_alive() -> None:
    producer = _Producer()
    channel = producer.subscribe()
    reader = ChannelReader(channel)  # no on_close: a notifier
    woken: list[int] = []
    reader._wake = lambda: woken.append(1)  # type: ignore[method-assign]
    channel.put(EventDelivered(Topic.from_str("t"), b""))
    del reader
    gc.collect()
    channel.put(EventDelivered(Topic.from_str("t"), b""))  # no reader: nothing to wake
    assert len(channel) == 2
