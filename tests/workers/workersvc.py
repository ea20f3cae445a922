"""The service the worker tests serve: which process answered, and events on rooms.

Also written as a user module next to ``serve --workers`` (tests read this file's text)."""

from __future__ import annotations

import os

import msgspec

from hardlight_core import Handler, Service, Topic, u32


class PidState(msgspec.Struct):
    n: u32 = 0


class Pids(Service):
    State = PidState

    async def pid(self) -> u32:
        raise NotImplementedError

    async def join(self, room: str) -> u32:
        raise NotImplementedError

    async def shout(self, room: str, value: u32) -> u32:
        raise NotImplementedError


class PidHandler(Pids, Handler):
    Event = u32

    async def pid(self) -> u32:
        return os.getpid()

    async def join(self, room: str) -> u32:
        self.subscribe(Topic.from_str(room))
        return os.getpid()

    async def shout(self, room: str, value: u32) -> u32:
        self.emit(Topic.from_str(room), value)
        return os.getpid()
