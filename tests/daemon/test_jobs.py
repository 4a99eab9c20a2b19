"""The daemon's housekeeping jobs, each on its own and on virtual time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from slouchd.daemon.jobs import Reloader, StatusLine, Watchdog, every
from slouchd.sdnotify import Notifier
from tests.fake_clock import FakeClock


class Sent(Notifier):
    def __init__(self, watchdog_s: float | None = None) -> None:
        super().__init__(env={})
        self.watchdog_s = watchdog_s
        self.lines: list[str] = []

    def send(self, *fields: str) -> bool:
        self.lines.extend(fields)
        return True


async def run_for(clock: FakeClock, seconds: float, job: Callable[[], None], period_s: float,
                  at_once: bool = False) -> None:
    ticker = asyncio.ensure_future(clock.run())
    task = asyncio.ensure_future(every(clock, period_s, job, at_once=at_once))
    end = clock.now + seconds
    try:
        async with asyncio.timeout(5):
            while clock.now < end:
                await asyncio.sleep(0)
        for _ in range(10):  # the job due at the end runs (the clock jumps again only after 200)
            await asyncio.sleep(0)
    finally:
        task.cancel()
        ticker.cancel()


async def test_every_runs_a_job_once_per_period_of_the_clock() -> None:
    clock = FakeClock()
    times: list[float] = []
    await run_for(clock, 60.0, lambda: times.append(clock.now), 1.0)
    assert times[:3] == [1001.0, 1002.0, 1003.0] and len(times) >= 59


async def test_the_status_line_is_sent_only_when_it_changes() -> None:
    notifier = Sent()
    status = ["a"]
    job = StatusLine(notifier, lambda: status[0])
    job()
    job()
    status[0] = "b"
    job()
    job()
    assert notifier.lines == ["STATUS=a", "STATUS=b"]


async def test_the_watchdog_pings_at_half_its_period_from_the_start_and_only_while_healthy() -> None:
    notifier = Sent(watchdog_s=30.0)
    healthy = [True]
    dog = Watchdog(notifier, lambda: healthy[0])
    assert dog.period_s == 15.0
    assert Watchdog(Sent(), lambda: True).period_s is None  # no WATCHDOG_USEC: no job at all
    clock = FakeClock()
    await run_for(clock, 45.0, dog, dog.period_s, at_once=True)
    assert notifier.lines.count("WATCHDOG=1") == 4  # at 0, 15, 30, 45 s
    healthy[0] = False
    dog()
    assert notifier.lines.count("WATCHDOG=1") == 4


async def test_requests_during_a_reload_make_exactly_one_more() -> None:
    started: list[int] = []
    release = asyncio.Event()

    async def reload() -> None:
        started.append(1)
        await release.wait()
        release.clear()

    reloader = Reloader(reload)
    task = asyncio.ensure_future(reloader.run())
    reloader.request()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert len(started) == 1
    for _ in range(5):
        reloader.request()
    release.set()
    for _ in range(5):
        await asyncio.sleep(0)
    release.set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(started) == 2
    task.cancel()


async def test_a_failing_reload_is_logged_and_the_next_request_still_runs(
        caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []

    async def reload() -> None:
        calls.append(1)
        raise RuntimeError("half-way")

    reloader = Reloader(reload)
    task = asyncio.ensure_future(reloader.run())
    reloader.request()
    for _ in range(3):
        await asyncio.sleep(0)
    reloader.request()
    for _ in range(3):
        await asyncio.sleep(0)
    assert len(calls) == 2 and not task.done()
    assert caplog.text.count("reload failed half-way") == 2
    task.cancel()
