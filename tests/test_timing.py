"""The shared backoff and timeout helper (slouchd/timing.py)."""

import asyncio
import random

import pytest

from slouchd.timing import Backoff, SystemClock, within


def test_backoff_doubles_from_min_to_the_cap_without_jitter():
    b = Backoff(1.0, 30.0, jitter_low=1.0)
    assert [b.next_s() for _ in range(7)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    b.reset()
    assert b.next_s() == 1.0


def test_backoff_jitter_stays_between_half_and_full_step():
    b = Backoff(2.0, 60.0, rng=random.Random(3))
    for attempt in range(12):
        d = b.delay_s(attempt)
        assert 0.5 * b.base_s(attempt) <= d <= b.base_s(attempt)
    assert b.base_s(10_000) == 60.0  # no overflow on a very long outage


@pytest.mark.parametrize("args", [(0.0, 1.0), (5.0, 1.0)])
def test_backoff_refuses_nonsense_bounds(args):
    with pytest.raises(ValueError, match="min_s"):
        Backoff(*args)


async def test_within_times_out_and_cancels_the_operation():
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def forever():
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(TimeoutError, match=r"0\.05 s"):
        await within(SystemClock(), forever(), 0.05)
    await asyncio.wait_for(cancelled.wait(), 1.0)
    assert started.is_set()


async def test_within_returns_the_result():
    async def answer():
        return 42

    assert await within(SystemClock(), answer(), 1.0) == 42


def test_once_per_kind_warns_once_per_window_and_counts_the_rest(caplog):
    import logging

    from slouchd.logs import OncePerKind

    now = [0.0]
    once = OncePerKind(logging.getLogger("t.once"), repeat_s=60.0, clock=lambda: now[0])
    with caplog.at_level(logging.DEBUG, logger="t.once"):
        assert once.warn("bad", "bad packet %d", 1)
        assert not once.warn("bad", "bad packet %d", 2)
        assert once.warn("other", "other problem")
        now[0] = 61.0
        assert once.warn("bad", "bad packet %d", 3)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["bad packet 1", "other problem", "bad packet 3 (1 more like this not shown)"]
