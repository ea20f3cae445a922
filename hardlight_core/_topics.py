"""Topics and who listens: the event switch, and the event-bus interface.

:class:`EventSwitch` maps each topic to the connections subscribed to it and
reports :class:`TopicCreated` when a topic gains its first subscriber and
:class:`TopicRemoved` when it loses its last. A closing connection is
unsubscribed from everything, so every ``Created`` is eventually balanced.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from ._envelope import Topic

__all__ = ["EventBus", "EventSwitch", "LocalBus", "TopicCreated", "TopicRemoved"]

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class TopicCreated:
    """``topic`` got its first subscriber."""

    topic: Topic


@dataclass(frozen=True, slots=True)
class TopicRemoved:
    """``topic`` lost its last subscriber."""

    topic: Topic


class EventBus(Protocol):
    """Where a node's events go beyond its own connections (the pure interface).

    The server engine tells the bus which topics this node is interested in
    (``topic_changed`` with the switch's Created/Removed) and hands it every event
    emitted here (``publish``); the bus delivers events published by other nodes
    through ``ServerCore.deliver``. :class:`LocalBus` (the default) keeps events on
    this node; ``hardlight_asyncio.NatsBus`` spans servers.
    """

    def topic_changed(self, change: TopicCreated | TopicRemoved) -> None:
        """This node gained its first or lost its last subscriber of a topic."""

    def publish(self, topic: Topic, payload: bytes) -> None:
        """An event was emitted on this node (already delivered to its subscribers)."""


class LocalBus:
    """The default bus: events stay on this node (its event switch delivers them)."""

    def topic_changed(self, change: TopicCreated | TopicRemoved) -> None:
        """Nothing to follow beyond this node."""

    def publish(self, topic: Topic, payload: bytes) -> None:
        """Nothing to forward beyond this node."""


class EventSwitch(Generic[K]):
    """topic -> subscribed connections, and connection -> its topics."""

    __slots__ = ("_by_conn", "_by_topic")

    def __init__(self) -> None:
        self._by_topic: dict[Topic, set[K]] = {}
        self._by_conn: dict[K, set[Topic]] = {}

    def subscribe(self, conn: K, topic: Topic) -> TopicCreated | None:
        """Subscribe ``conn``; ``TopicCreated`` if nobody was subscribed before."""
        subscribers = self._by_topic.get(topic)
        created = subscribers is None
        if subscribers is None:
            subscribers = self._by_topic[topic] = set()
        subscribers.add(conn)
        self._by_conn.setdefault(conn, set()).add(topic)
        return TopicCreated(topic) if created else None

    def unsubscribe(self, conn: K, topic: Topic) -> TopicRemoved | None:
        """Unsubscribe ``conn``; ``TopicRemoved`` if it was the last subscriber."""
        topics = self._by_conn.get(conn)
        if topics is None or topic not in topics:
            return None
        topics.discard(topic)
        if not topics:
            del self._by_conn[conn]
        subscribers = self._by_topic[topic]
        subscribers.discard(conn)
        if subscribers:
            return None
        del self._by_topic[topic]
        return TopicRemoved(topic)

    def unsubscribe_all(self, conn: K) -> list[TopicRemoved]:
        """Unsubscribe ``conn`` from everything (it is closing)."""
        removed = []
        for topic in list(self._by_conn.get(conn, ())):
            change = self.unsubscribe(conn, topic)
            if change is not None:
                removed.append(change)
        return removed

    def subscribers(self, topic: Topic) -> Iterable[K]:
        """Connections subscribed to ``topic`` (a snapshot is taken by callers that mutate)."""
        return self._by_topic.get(topic, ())

    def topics_of(self, conn: K) -> frozenset[Topic]:
        """Topics ``conn`` is subscribed to."""
        return frozenset(self._by_conn.get(conn, ()))

    @property
    def topics(self) -> frozenset[Topic]:
        """Every topic with at least one subscriber."""
        return frozenset(self._by_topic)

    def __len__(self) -> int:
        return len(self._by_topic)
