"""A short soak (the long one is ``python -m hardlight_conformance soak --seconds 600``)."""

from __future__ import annotations

import asyncio

from hardlight_conformance._soak_cli import soak


def test_short_soak_loses_nothing_and_memory_holds() -> None:
    report = asyncio.run(asyncio.wait_for(soak(connections=20, seconds=12, seed=3), 120))
    assert report.connects > 20  # random disconnects made clients reconnect
    assert report.calls_made > 1000
    assert report.calls_lost == 0
    assert report.calls_answered + report.calls_failed_typed == report.calls_made
    assert report.events_received > 0
    assert report.ok, report
