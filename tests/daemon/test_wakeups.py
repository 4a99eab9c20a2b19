"""The daemon's selector: dense small events cost one wake-up per quantum, sparse ones and the
loop's timers are untouched (slouchd/daemon/wakeups.py)."""

from __future__ import annotations

import asyncio
import selectors
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from slouchd.daemon.wakeups import (
    CALM_QUANTUM_S,
    WAKE_QUANTUM_S,
    CoalescingSelector,
    WakePace,
    new_event_loop,
)


def _drive(sel: CoalescingSelector, gaps_s: list[float]) -> list[float]:
    """A thread writes one byte after each gap; the selector loop reads them. Returns how late
    each byte was read (seconds after its write)."""
    a, b = socket.socketpair()
    b.setblocking(False)
    sel.register(b, selectors.EVENT_READ)
    sent: list[float] = []

    def writer() -> None:
        for gap in gaps_s:
            time.sleep(gap)
            sent.append(time.monotonic())
            a.send(b"x")

    th = threading.Thread(target=writer)
    th.start()
    late: list[float] = []
    try:
        while len(late) < len(gaps_s):
            if sel.select(2.0):
                now = time.monotonic()
                n = len(b.recv(4096))
                late += [now - t for t in sent[len(late):len(late) + n]]
    finally:
        th.join()
        sel.unregister(b)
        a.close()
        b.close()
    return late


def test_dense_events_wake_once_per_quantum_and_wait_at_most_about_one() -> None:
    sel = CoalescingSelector(0.01)
    late = _drive(sel, [0.001] * 300)  # ~1,000 events a second
    assert len(late) == 300
    assert sel.wakeups <= 300 * 0.0011 / 0.01 * 1.6 + 5  # about one per 10 ms, not 300
    assert sel.coalesced >= sel.wakeups // 2
    assert max(late) < 0.01 + 0.03  # a quantum, plus scheduling noise on a busy CI machine


def test_sparse_events_are_handled_at_once_with_no_extra_wake_up() -> None:
    sel = CoalescingSelector(0.01)
    late = _drive(sel, [0.03] * 10)  # one sensor's packet every 30 ms
    assert sel.coalesced == 0 and sel.wakeups == 10
    assert sorted(late)[8] < 0.01


class FakeTime:
    """A monotonic clock the selector's naps move on, and the naps it took (seconds)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.now += s


Faked = tuple[CoalescingSelector, FakeTime, socket.socket, socket.socket]


@pytest.fixture
def faked() -> Iterator[Faked]:
    """A selector on a fake clock watching ``b`` of a socket pair (the test writes to ``a``)."""
    ft = FakeTime()
    sel = CoalescingSelector(0.01, clock=ft.clock, sleep=ft.sleep)
    a, b = socket.socketpair()
    sel.register(b, selectors.EVENT_READ)
    yield sel, ft, a, b
    sel.close()
    a.close()
    b.close()


def _events(f: Faked, n: int, gap_s: float) -> None:
    """``n`` events ``gap_s`` apart, each taken by a blocking select."""
    sel, ft, a, b = f
    for _ in range(n):
        a.send(b"x")
        assert sel.select(1.0)
        b.recv(16)
        ft.now += gap_s


def test_a_timer_due_inside_the_quantum_is_never_delayed(faked: Faked) -> None:
    sel, ft, _, _ = faked
    _events(faked, 6, 0.002)  # an event every 2 ms: a dense stream
    assert not ft.slept  # (these blocked: the stream was only becoming dense)
    _events(faked, 1, 0.001)
    ft.slept.clear()
    assert sel.select(0.003) == []  # the loop's next timer in 3 ms: nothing came
    assert ft.slept == [pytest.approx(0.003)]  # slept until the timer, not the 7 ms left
    assert sel.select(0) == [] and ft.slept == [pytest.approx(0.003)]  # work ready: no wait


def test_a_quick_pair_of_events_is_not_a_dense_stream() -> None:
    # A read followed at once by a socket turning writable: no nap (it would cost a wake-up).
    sel = CoalescingSelector(0.01)
    _drive(sel, [0.03, 0.0005] * 8)
    assert sel.coalesced == 0


def test_off_and_bad_quanta() -> None:
    sel = CoalescingSelector(0.0)
    _drive(sel, [0.001] * 50)
    assert sel.coalesced == 0
    with pytest.raises(ValueError):
        CoalescingSelector(-0.01)


def test_the_daemons_loop_runs_on_it() -> None:
    loop = new_event_loop()
    try:
        assert isinstance(loop._selector, CoalescingSelector)  # type: ignore[attr-defined]
        assert loop._selector.pace is loop.wake_pace  # type: ignore[attr-defined]
        assert loop._selector.quantum_s == CALM_QUANTUM_S  # type: ignore[attr-defined]
        assert loop.wake_pace.hurried_s == WAKE_QUANTUM_S
        assert loop.run_until_complete(asyncio.sleep(0.01, result=7)) == 7
    finally:
        loop.close()


def test_the_quantum_is_short_while_anyone_hurries() -> None:
    pace = WakePace(0.01, 0.05)
    assert pace.quantum_s == 0.05 and not pace.hurried
    pace.hurry("ana", True)
    pace.hurry("bo", True)
    pace.hurry("ana", False)
    assert pace.quantum_s == 0.01  # bo still hurries
    pace.hurry("bo", False)
    pace.hurry("bo", False)  # (saying it twice is fine)
    assert pace.quantum_s == 0.05
    with pytest.raises(ValueError):
        WakePace(0.05, 0.01)


def test_dense_events_nap_the_calm_quantum_and_the_short_one_once_someone_hurries() -> None:
    ft = FakeTime()
    pace = WakePace(0.01, 0.05)
    sel = CoalescingSelector(pace=pace, clock=ft.clock, sleep=ft.sleep)
    a, b = socket.socketpair()
    sel.register(b, selectors.EVENT_READ)
    try:
        f = (sel, ft, a, b)
        _events(f, 8, 0.004)  # an event every 4 ms: dense under the calm quantum
        ft.slept.clear()
        a.send(b"x")
        assert sel.select(None)
        assert ft.slept == [pytest.approx(0.05 - 0.004)]  # the rest of 50 ms since the last wake-up
        b.recv(16)
        pace.hurry("ana", True)
        ft.slept.clear()
        ft.now += 0.001
        a.send(b"x")
        assert sel.select(None)
        assert ft.slept == [pytest.approx(0.01 - 0.001)]  # at once the 10 ms quantum
    finally:
        sel.close()
        a.close()
        b.close()


def test_a_clock_that_steps_back_never_stalls_the_loop(faked: Faked) -> None:
    sel, ft, a, _ = faked
    _events(faked, 8, 0.001)  # events 1 ms apart: dense
    ft.now -= 3600.0  # the monotonic clock (faked) steps an hour back
    a.send(b"x")
    assert sel.select(None)
    assert ft.slept and max(ft.slept) <= 0.01
