"""The counter app of the reference's README (``examples/counter.rs``)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import ClassVar

import msgspec

from hardlight_core import Handler, Service, Topic, TopicCreated, TopicRemoved, Variant, u32

__all__ = [
    "Counter",
    "CounterEvent",
    "CounterHandler",
    "CounterState",
    "Decremented",
    "Incremented",
    "ServerSentTest",
    "notifier_reaction",
]

MASK = 0xFFFFFFFF


class Incremented(Variant, frozen=True):
    """The counter went up."""

    to: u32
    from_: u32


class Decremented(Variant, frozen=True):
    """The counter went down."""

    to: u32
    from_: u32


class ServerSentTest(Variant, frozen=True):
    """Sent by the server's topic notifier to every new topic."""


CounterEvent = Incremented | Decremented | ServerSentTest


class CounterState(msgspec.Struct):
    """The connection state: the counter and the topic its events go to."""

    counter: u32 = 0
    topic: Topic = msgspec.field(default_factory=Topic)


class Counter(Service):
    """The RPC methods (Rust trait ``Counter``)."""

    State = CounterState

    async def new_counter(self) -> None:
        """Creates a new counter (and a new random 1-byte topic for its events)."""
        raise NotImplementedError

    async def increment(self, amount: u32) -> None:
        """Increments the counter by ``amount``."""
        raise NotImplementedError

    async def decrement(self, amount: u32) -> None:
        """Decrements the counter by ``amount``."""
        raise NotImplementedError

    async def get(self) -> u32:
        """The counter's value."""
        raise NotImplementedError


class CounterHandler(Counter, Handler):
    """The reference's handler; arithmetic wraps at 2^32 as its release build does."""

    Event = CounterEvent
    #: where new topics come from (replays inject the recorded byte)
    topic_source: ClassVar[Callable[[], bytes]] = staticmethod(lambda: os.urandom(1))
    state: CounterState

    async def new_counter(self) -> None:
        state = self.state
        self.unsubscribe(state.topic)
        state.topic = Topic.from_bytes(type(self).topic_source())
        state.counter = 0
        self.subscribe(state.topic)

    async def increment(self, amount: u32) -> None:
        state = self.state
        new = (state.counter + amount) & MASK
        event = Incremented(to=new, from_=state.counter)
        state.counter = new
        self.emit(state.topic, event)

    async def decrement(self, amount: u32) -> None:
        state = self.state
        new = (state.counter - amount) & MASK
        event = Decremented(to=new, from_=state.counter)
        state.counter = new
        self.emit(state.topic, event)

    async def get(self) -> u32:
        return self.state.counter


def notifier_reaction(change: TopicCreated | TopicRemoved) -> ServerSentTest | None:
    """What the example's topic notifier emits for a change: ServerSentTest on Created."""
    return ServerSentTest() if isinstance(change, TopicCreated) else None
