"""The frame types :mod:`._framing` returns: :class:`Opcode` and :class:`Frame`.

They live apart from the reader so that ``_framing`` can be compiled with mypyc
(docs/compiled.md): mypyc drops a class statement's keywords (python/mypy#21938),
so ``Frame`` compiled there would lose ``frozen=True``. This module stays interpreted.
"""

from __future__ import annotations

import enum

import msgspec

__all__ = ["Frame", "Opcode"]


class Opcode(enum.IntEnum):
    """WebSocket opcodes."""

    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


class Frame(msgspec.Struct, frozen=True):
    """A complete message (data frames reassembled) or a control frame."""

    opcode: Opcode
    payload: bytes
    close_code: int | None = None
    close_reason: str = ""
