"""Shared fixtures of the BLE tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.ble.fake_bleak import FakeClock


@pytest.fixture
async def clock() -> AsyncIterator[FakeClock]:
    """The fake clock, driven by a task for the test's duration."""
    c = FakeClock()
    driver = asyncio.create_task(c.run())
    yield c
    driver.cancel()
