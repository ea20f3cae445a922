"""Fixtures for the reliability tests (helpers live in hl_reliability.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hl_reliability import ServerThread


@pytest.fixture
def server() -> Iterator[ServerThread]:
    s = ServerThread()
    yield s
    s.stop()
