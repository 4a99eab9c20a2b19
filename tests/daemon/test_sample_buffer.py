"""The per-wearer sample buffer: the tracker runs per completed 0.1 s tick, whatever the packet size,
and what comes out equals replay (one big batch) exactly, for 1-, 5- and 36-sample notifications,
through the real daemon's sample path."""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from slouchd.config import parse_config
from slouchd.daemon import CALM_DISPATCH_TICKS, DISPATCH_TICKS, Daemon, new_tracker
from slouchd.model import Event, Mount, PostureFrame, SampleBatch
from slouchd.posture.filters import SCALAR_MAX_SAMPLES, SCALAR_MAX_TICKS
from slouchd.sample_buffer import MAX_HELD_SAMPLES, SampleBuffer
from slouchd.sensors.base import SensorStatus
from tests._broker import MosquittoBroker
from tests.posture.synth import Step, wear

T0 = 1_700_000_000.0


def _packets(day: SampleBatch, size: int) -> list[SampleBatch]:
    g = day.gyro_dps
    return [SampleBatch(day.t_s[a:a + size], day.acc_g[a:a + size], None if g is None else g[a:a + size])
            for a in range(0, len(day), size)]


def _one(t: float, gyro: bool = True) -> SampleBatch:
    return SampleBatch(np.array([t]), np.array([[0.0, 1.0, 0.0]]), np.zeros((1, 3)) if gyro else None)


def _feed(buf: SampleBuffer, packets: list[SampleBatch]) -> list[SampleBatch]:
    out: list[SampleBatch] = []
    for p in packets:
        out += buf.add(p)
    return out


def test_one_sample_notifications_reach_the_tracker_once_per_tick_and_in_full() -> None:
    t = T0 + 0.013 + np.arange(500) / 50.0  # 10 s at 50 Hz, off the tick grid
    day = SampleBatch(t, np.tile([0.0, 1.0, 0.0], (500, 1)), np.zeros((500, 3)))
    handed = _feed(SampleBuffer(), _packets(day, 1))
    # The first sample goes at once, then one hand-over per completed tick (10 s = 100 ticks).
    assert 99 <= len(handed) <= 101
    # Each hand-over ends with the first sample of a new tick: the one that lets the tracker decide.
    last_k = [math.floor(b.t_s[-1] / 0.1) for b in handed]
    assert all(b - a == 1 for a, b in itertools.pairwise(last_k))
    assert all(len(b) <= 6 for b in handed)
    joined = np.concatenate([b.t_s for b in handed])
    assert np.array_equal(joined, t[:len(joined)]) and len(joined) >= 495


def test_two_tick_buffer_halves_the_hand_overs() -> None:
    t = T0 + 0.11 + np.arange(500) / 50.0  # the first sample in an odd tick
    day = SampleBatch(t, np.tile([0.0, 1.0, 0.0], (500, 1)))
    one = _feed(SampleBuffer(1), _packets(day, 1))
    two = _feed(SampleBuffer(2), _packets(day, 1))
    assert abs(len(two) - len(one) / 2) <= 2
    # On even ticks: the first sample of every whole second (which closes the second's last tick,
    # and so its 1 Hz state) is handed over at once, never held for a second tick.
    assert all(math.floor(b.t_s[-1] / 0.1 + 1e-9) % 2 == 0 for b in two[1:])
    firsts = {float(t[i]) for i in range(1, len(t)) if math.floor(t[i]) != math.floor(t[i - 1])}
    assert firsts and firsts <= {float(b.t_s[-1]) for b in two}


def test_going_back_to_every_tick_takes_effect_at_the_next_tick() -> None:
    t = T0 + 0.01 + np.arange(100) / 50.0
    packets = _packets(SampleBatch(t, np.tile([0.0, 1.0, 0.0], (100, 1))), 1)
    buf = SampleBuffer(2)
    handed = _feed(buf, packets[:12])  # up to 0.23 s: the last hand-over at tick 2 (t = 0.21)
    assert float(handed[-1].t_s[-1]) == float(t[10])
    buf.ticks = 1
    (nxt,) = _feed(buf, packets[12:16])  # tick 3 starts at t = 0.31 (sample 15)
    assert float(nxt.t_s[-1]) == float(t[15])


def test_small_packets_that_complete_a_tick_go_through_without_a_copy() -> None:
    t = T0 + np.arange(100) / 50.0
    day = SampleBatch(t, np.tile([0.0, 1.0, 0.0], (100, 1)))
    packets = _packets(day, 5)
    handed = _feed(SampleBuffer(), packets)
    assert len(handed) == len(packets)  # 5 samples at 50 Hz off the grid: each completes a tick
    assert all(h.t_s is p.t_s for h, p in zip(handed, packets, strict=True))


@pytest.mark.parametrize(("size", "rate"), [(36, 50.0), (36, 130.0), (240, 50.0), (33, 100.0)])
def test_big_packets_are_cut_into_pieces_the_tracker_runs_on_its_float_path(size: int, rate: float) -> None:
    t = T0 + 0.004 + np.arange(20 * size) / rate
    day = SampleBatch(t, np.tile([0.0, 1.0, 0.0], (len(t), 1)))
    handed = _feed(SampleBuffer(), _packets(day, size))
    assert np.array_equal(np.concatenate([h.t_s for h in handed]), t)  # all of them, in order
    for h in handed:
        assert len(h) <= SCALAR_MAX_SAMPLES
        ticks = np.unique(np.floor(h.t_s / 0.1))
        assert len(ticks) <= SCALAR_MAX_TICKS  # closes at most SCALAR_MAX_TICKS - 1 ticks
        assert np.shares_memory(h.t_s, t)  # views of the packet, not copies


def test_a_switch_of_gyro_on_or_off_is_handed_over_apart() -> None:
    buf = SampleBuffer()
    assert len(buf.add(_one(T0 + 0.01))) == 1 and len(buf) == 0  # the very first: at once
    assert buf.add(_one(T0 + 0.03)) == ()
    (before,) = buf.add(_one(T0 + 0.05, gyro=False))
    assert before.gyro_dps is not None and len(before) == 1
    assert len(buf) == 1
    (left,) = buf.take()
    assert left.gyro_dps is None


def test_non_finite_times_are_handed_over_at_once_and_stuck_clocks_are_capped() -> None:
    buf = SampleBuffer()
    buf.add(_one(T0))
    assert len(buf.add(_one(math.nan))) == 1  # the tracker counts and drops it
    buf = SampleBuffer()
    buf.add(_one(T0 + 5.0))
    handed = _feed(buf, [_one(T0) for _ in range(MAX_HELD_SAMPLES)])  # a clock that stands still
    assert sum(len(h) for h in handed) == MAX_HELD_SAMPLES and len(buf) == 0


class PacketSource:
    """Delivers a recording as notifications of ``size`` samples, unpaced (a yield per packet)."""

    def __init__(self, day: SampleBatch, size: int) -> None:
        self.status = SensorStatus()
        self.packets = _packets(day, size)
        self.done = asyncio.Event()

    async def __aenter__(self) -> PacketSource:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass

    async def __aiter__(self) -> AsyncIterator[SampleBatch]:
        for p in self.packets:
            self.status.packets += 1
            yield p
            await asyncio.sleep(0)
        self.done.set()
        await asyncio.sleep(3600)  # a live sensor does not end; the test stops the daemon

    async def buzz(self, level: int) -> bool:
        return False


class Collect:
    def __init__(self) -> None:
        self.frames: list[PostureFrame] = []
        self.events: list[Event] = []

    def on_frame(self, wearer: str, frame: PostureFrame) -> None:
        self.frames.append(frame)

    def on_event(self, wearer: str, event: Event) -> None:
        self.events.append(event)


def _day() -> SampleBatch:
    day = wear([Step(15), Step(40, 25), Step(3, 50, what="fidget"), Step(10, 0), Step(8, 5, what="walk"),
                Step(10, 0)], rate_hz=50.0, gyro=True, seed=3)
    return SampleBatch(day.t_s + T0, day.acc_g, day.gyro_dps)


@pytest.mark.parametrize("size", [1, 5, 36])
async def test_live_notifications_through_the_buffer_equal_replay_exactly(
        size: int, tmp_path: Path, mosquitto: MosquittoBroker) -> None:
    day = _day()
    cfg = parse_config({
        "daemon": {"state_dir": str(tmp_path / "state")},
        "mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "base_topic": f"buf{size}"},
        "detection": {"dwell_s": 10},
        "wearers": [{"name": "ana", "sensor": "C4:AA:10:2B:33:01", "profile": "generic", "mount": "+y,-z"}],
    })
    # Replay: the same tracker as the daemon's, on the whole recording at once.
    ref = new_tracker(cfg, cfg.wearer_detection(cfg.wearers[0]), Mount.parse("+y,-z"))
    out = ref.process(day)
    assert out.events and any(e.kind.value == "slouch_alert" for e in out.events)

    source = PacketSource(day, size)
    view = Collect()
    d = Daemon(cfg, view=view, open_source=lambda *a, **k: source)
    run = asyncio.create_task(d.run())
    await asyncio.wait_for(source.done.wait(), 30)
    calls = d.wearers["ana"].tracker_calls
    d.request_stop()
    assert await asyncio.wait_for(run, 10) == 0
    # Samples held for the next tick are processed on the way out, so all of them are in.
    # What is published (the JSON's rounding) is identical; raw angles agree far below it (the
    # tracker's own float shortcuts, see tests/posture/test_live_packets.py).
    assert [f.to_dict() for f in view.frames] == [f.to_dict() for f in out.frames]
    assert [e.to_dict() for e in view.events] == [e.to_dict() for e in out.events]
    for got, want in zip(view.frames, out.frames, strict=True):
        for a, b in ((got.flexion_deg, want.flexion_deg), (got.lateral_deg, want.lateral_deg)):
            assert (a is None and b is None) or math.isclose(a, b, abs_tol=1e-9)  # type: ignore[arg-type]
    ticks = (day.t_s[-1] - day.t_s[0]) / 0.1
    # The tracker runs per completed tick, not per notification (a 36-sample one: 3 pieces).
    assert calls <= (ticks + 2 if size <= 5 else 3 * len(source.packets))


def _alert_arrivals(packets: list[SampleBatch], cfg_doc: dict[str, object], mount: Mount | None,
                    adaptive: bool) -> tuple[list[tuple[int, float]], int, list[Event]]:
    """(index of the packet on whose arrival each slouch alert came out, its sample time), the
    tracker calls and every event, with the daemon's dispatch (adaptive: CALM_DISPATCH_TICKS
    unless the tracker is urgent) or every tick."""
    cfg = parse_config(cfg_doc)
    tracker = new_tracker(cfg, cfg.detection, mount)
    buf = SampleBuffer(DISPATCH_TICKS)
    alerts: list[tuple[int, float]] = []
    events: list[Event] = []
    calls = 0
    for i, p in enumerate(packets):
        for ready in buf.add(p):
            urgent_before = tracker.urgent
            out = tracker.process(ready)
            calls += 1
            new = [(i, e.t_s) for e in out.events if e.kind.value == "slouch_alert"]
            # The event loop naps longer while no wearer is urgent (daemon/wakeups.py, WakePace):
            # safe only because an alert never comes out of a call the tracker was calm before.
            assert urgent_before or not new, f"an alert out of a calm hand-over at packet {i}"
            alerts += new
            events += out.events
            if adaptive:  # as WearerRuntime.pace does
                buf.ticks = DISPATCH_TICKS if tracker.urgent else CALM_DISPATCH_TICKS
    return alerts, calls, events


@pytest.mark.parametrize(("detection", "declared", "calls_at_most"), [
    # (A dwell within the horizon plus margin, 1.2 s, would keep the tracker urgent throughout.)
    ({"dwell_s": 2, "repeat_s": 10}, True, 0.2),
    ({"dwell_s": 3, "repeat_s": 10, "cumulative": True}, True, 0.6),
    # The forward axis learned from the bends: a slouch that went on unjudged alerts on the
    # very tick the axis is learned, so the tracker is urgent while that tick may come.
    ({"dwell_s": 2, "repeat_s": 10}, False, 0.2),
])
def test_calm_dispatch_cuts_the_calls_and_never_delays_an_alert(detection: dict[str, object],
                                                                declared: bool, calls_at_most: float) -> None:
    # A simulated hour at 50 Hz, 1-sample notifications, with desk vibration and fast twists (the
    # motion credit that can start a slouch already due); short dwells make alerts frequent.
    from slouchd.sensors.simulated import SimSettings, SimulatedWearer

    sim = SimSettings(seed=5, rate_hz=50.0, gyro=True, desk_vibration=True, fast_moves=True, start_s=T0)
    day = SampleBatch.concat(list(SimulatedWearer(sim).batches(60.0, end_s=3600.0)))
    packets = _packets(day, 1)
    doc = {"detection": detection}
    mount = sim.mount if declared else None
    every_tick, calls_every, events_every = _alert_arrivals(packets, doc, mount, adaptive=False)
    adaptive, calls_adaptive, events_adaptive = _alert_arrivals(packets, doc, mount, adaptive=True)
    assert len(every_tick) >= 20
    if not declared:
        learned = [e for e in events_every if e.kind.value == "calibrated"]
        assert any(e.data.get("axis_source") == "learned" for e in learned)
    # Each alert comes out on the arrival of the very same notification as with per-tick dispatch,
    # and everything else is the same too.
    assert adaptive == every_tick
    assert [e.to_dict() for e in events_adaptive] == [e.to_dict() for e in events_every]
    # This hour slouches a lot. A running slouch only needs every tick in the last 1.2 s before
    # its next alert (cumulative mode: the whole slouch and its exposure).
    assert calls_adaptive < calls_at_most * calls_every


def test_a_calibration_asked_for_makes_the_tracker_urgent_until_it_is_answered() -> None:
    day = wear([Step(30), Step(30)], rate_hz=50.0, gyro=True, seed=2)
    day = SampleBatch(day.t_s + T0, day.acc_g, day.gyro_dps)
    cfg = parse_config({"detection": {"dwell_s": 30}})
    tracker = new_tracker(cfg, cfg.detection, Mount.parse("+y,-z"))
    half = len(day) // 2
    tracker.process(SampleBatch(day.t_s[:half], day.acc_g[:half], day.gyro_dps[:half]))  # type: ignore[index]
    assert tracker.calibration is not None and not tracker.urgent  # upright, still: calm
    tracker.request_calibration()
    assert tracker.urgent  # the answer is handed over on its tick, not up to a second later
    answers = []
    for p in _packets(SampleBatch(day.t_s[half:], day.acc_g[half:], day.gyro_dps[half:]), 5):  # type: ignore[index]
        answers += [e for e in tracker.process(p).events if e.kind.value.startswith("calibrat")]
        if answers:
            break
    assert answers and answers[0].kind.value == "calibrated"
    assert not tracker.urgent
