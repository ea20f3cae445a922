"""Reconnection for the async clients (asyncio, anyio on either backend): the waits and
the hook run here, the decisions in the core's ``ClientDriver``."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from hardlight_core import HardLightError

from ._client_base import ClientBase

__all__ = ["reconnect_with_backoff"]

log = logging.getLogger("hardlight")


async def reconnect_with_backoff(
    client: ClientBase[Any],
    connect: Callable[[], Awaitable[None]],
    resume: Callable[[], None],
) -> None:
    """Try ``connect()`` after each of the driver's reconnect delays until it succeeds or
    the driver gives up; after a success, run the user's reconnect hook, then ``resume()``
    (send the calls held while it ran)."""
    driver = client._driver
    for delay in driver.reconnect_delays():
        await anyio.sleep(delay)
        try:
            await connect()
        except (OSError, HardLightError) as exc:  # CertificateMismatch is a HardLightError
            driver.reconnect_failed(exc)
            continue
        hook = driver.reconnect_hook
        if hook is None or not driver.hook_pending:
            continue
        token = driver.enter_hook()
        try:
            await hook(client)
        except Exception:
            log.exception("the reconnect hook of the client of %s raised", driver.address)
        finally:
            driver.leave_hook(token)
            resume()
