"""Fuzz targets: only typed errors may come out of the codec or the server machine.

Run with atheris (coverage-guided), for as long as you like:

    python -m pip install atheris
    python fuzz/fuzz_targets.py server -atheris_runs=1000000
    python fuzz/fuzz_targets.py codec -max_total_time=600

The test suite runs every target over a bounded set of seeds and mutations
(tests/reliability/test_fuzz_targets.py) without atheris.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable

from hardlight_apps.counter import CounterHandler
from hardlight_apps.todo import TodoState
from hardlight_core import (
    DecodeError,
    HardLightError,
    ServerCore,
    decode,
    decode_client_message,
    decode_server_message,
)

REQUEST = (
    b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: AQEBAQEBAQEBAQEBAQEBAQ==\r\n"
    b"x-hl-compress: 6\r\nSec-WebSocket-Protocol: hl/2\r\n\r\n"
)


def fuzz_codec(data: bytes) -> None:
    """Decoders raise DecodeError or succeed, whatever the bytes."""
    for decoder in (
        decode_client_message,
        decode_server_message,
        lambda d: decode(d, TodoState),
    ):
        with contextlib.suppress(DecodeError):
            decoder(data)


_CORE = ServerCore(CounterHandler)


def fuzz_server(data: bytes) -> None:
    """The server machine takes any bytes after a valid upgrade: typed errors only, and its
    handler calls run to completion."""
    session = _CORE.open_session()
    try:
        for chunk in (REQUEST, data[: len(data) // 2], data[len(data) // 2 :], b""):
            for call in session.receive_data(chunk, 0.0):
                call.run_inline()
            session.data_to_send()
    except HardLightError:
        pass
    finally:
        session.connection_lost()


def fuzz_server_raw(data: bytes) -> None:
    """The server machine from the very first byte (HTTP parsing included)."""
    session = _CORE.open_session()
    try:
        session.receive_data(data, 0.0)
        session.data_to_send()
    except HardLightError:
        pass
    finally:
        session.connection_lost()


TARGETS: dict[str, Callable[[bytes], None]] = {
    "codec": fuzz_codec,
    "server": fuzz_server,
    "server_raw": fuzz_server_raw,
}


def main() -> None:
    """Run one target under atheris: ``python fuzz/fuzz_targets.py TARGET [atheris args]``."""
    import atheris

    target = TARGETS[sys.argv[1]]
    atheris.instrument_all()  # coverage feedback for every module loaded above
    atheris.Setup([sys.argv[0], *sys.argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
