"""The chat app of the recorded suite: string topics, two clients, shared history."""

from __future__ import annotations

from typing import ClassVar

import msgspec

from hardlight_core import Handler, Service, Topic, Variant, u32, u64

__all__ = [
    "Chat",
    "ChatEvent",
    "ChatHandler",
    "ChatRooms",
    "ChatState",
    "Joined",
    "Left",
    "Message",
    "Said",
]

MAX_HISTORY = 10_000  # per room: the history is bounded like every other buffer


class Message(msgspec.Struct, frozen=True):
    """A chat message (``from`` in Rust)."""

    from_: str
    text: str
    seq: u64


class Joined(Variant, frozen=True):
    """``ChatEvent::Joined { user }``."""

    user: str


class Left(Variant, frozen=True):
    """``ChatEvent::Left { user }``."""

    user: str


class Said(Variant, frozen=True):
    """``ChatEvent::Said(Message)``."""

    message: Message


ChatEvent = Joined | Left | Said


class ChatState(msgspec.Struct):
    """The connection state."""

    user: str = ""
    room: Topic = msgspec.field(default_factory=Topic)
    sent: u32 = 0


class ChatRooms:
    """Room histories shared by all connections of one server."""

    def __init__(self) -> None:
        self.history: dict[Topic, list[Message]] = {}
        self.seq: dict[Topic, int] = {}

    def append(self, room: Topic, sender: str, text: str) -> Message:
        """Store a message; its ``seq`` counts the room's messages (1, 2, ...)."""
        seq = self.seq.get(room, 0) + 1
        self.seq[room] = seq
        message = Message(from_=sender, text=text, seq=seq)
        history = self.history.setdefault(room, [])
        history.append(message)
        if len(history) > MAX_HISTORY:
            del history[: len(history) - MAX_HISTORY]
        return message


class Chat(Service):
    """The RPC methods (Rust trait ``Chat``)."""

    State = ChatState

    async def join(self, room: str, user: str) -> u32:
        """Join ``room`` as ``user``; returns how many messages the room has."""
        raise NotImplementedError

    async def send_message(self, text: str) -> u64:
        """Say something in the current room; returns the message's seq."""
        raise NotImplementedError

    async def history(self, limit: u32) -> list[Message]:
        """The last ``limit`` messages of the current room."""
        raise NotImplementedError

    async def leave(self) -> None:
        """Leave the current room."""
        raise NotImplementedError


class ChatHandler(Chat, Handler):
    """The recorded chat handler. ``rooms`` is shared by every connection of a server."""

    Event = ChatEvent
    rooms: ClassVar[ChatRooms] = ChatRooms()
    state: ChatState

    async def join(self, room: str, user: str) -> u32:
        topic = Topic.from_str("chat-" + room)
        self.subscribe(topic)  # effective at once: our own Joined reaches us too
        self.state.user = user
        self.state.room = topic
        self.emit(topic, Joined(user=user))
        return len(self.rooms.history.get(topic, ()))

    async def send_message(self, text: str) -> u64:
        state = self.state
        message = self.rooms.append(state.room, state.user, text)
        state.sent = (state.sent + 1) & 0xFFFFFFFF
        self.emit(state.room, Said(message=message))
        return message.seq

    async def history(self, limit: u32) -> list[Message]:
        history = self.rooms.history.get(self.state.room, [])
        return history[-limit:] if limit else []

    async def leave(self) -> None:
        state = self.state
        self.emit(state.room, Left(user=state.user))
        self.unsubscribe(state.room)
        state.room = Topic()
