"""The coach's glue in one wearer's runtime, on a fake host (no MQTT, no sensor): a command starts
a session (frames every 0.1 s, the retained stretch topic), a haptic event buzzes the sensor, a
refused session changes nothing, and the coach's counts go into the state file's snapshot."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from slouchd.config import Config, WearerSettings, parse_config
from slouchd.daemon.coach import ThreadedHistory
from slouchd.daemon.sources import SourcePlan
from slouchd.daemon.wearer import WearerRuntime
from slouchd.history import HistoryStore
from slouchd.model import Event, EventKind, PostureFrame
from slouchd.posture.stretch_catalog import StretchCatalog
from slouchd.publish.commands import Command
from slouchd.sensors.base import SensorSource
from slouchd.state import StateStore
from slouchd.stretches import load_catalog


class Host:
    """A WearerHost that records what the runtime publishes."""

    def __init__(self, config: Config, state_dir: Path) -> None:
        self._config = config
        self._catalog = load_catalog()
        self._history = ThreadedHistory(HistoryStore(state_dir))
        self.retained_docs: list[tuple[str, dict[str, Any]]] = []
        self.events: list[str] = []

    @property
    def config(self) -> Config:
        return self._config

    @property
    def catalog(self) -> StretchCatalog:
        return self._catalog

    @property
    def history(self) -> ThreadedHistory:
        return self._history

    def retained(self, wearer: str, name: str, doc: dict[str, Any]) -> bool:
        self.retained_docs.append((name, doc))
        return True

    def open_source(self, plan: SourcePlan, settings: WearerSettings) -> SensorSource:
        raise AssertionError("not streaming in this test")

    def diagnostics(self) -> dict[str, Any]:
        return {}

    def state(self, wearer: str, frame: PostureFrame, payload: Any, *, show: bool = True) -> None:
        payload(frame)

    def event(self, wearer: str, event: Event, doc: dict[str, Any]) -> None:
        self.events.append(event.kind.value)

    def stats(self, wearer: str, stats: dict[str, Any]) -> None:
        pass

    def availability(self, wearer: str, online: bool) -> None:
        pass

    def settings_changed(self) -> None:
        pass


class Buzzer:
    """The part of a sensor source the runtime uses for a buzz."""

    status = None

    def __init__(self) -> None:
        self.levels: list[int] = []

    async def buzz(self, level: int) -> bool:
        self.levels.append(level)
        return True


async def test_a_session_by_command_a_haptic_buzz_and_the_snapshot(tmp_path: Path) -> None:
    cfg = parse_config({"wearers": [{"name": "ana", "sensor": "simulated"}]})
    host = Host(cfg, tmp_path)
    rt = WearerRuntime(host, cfg.wearers[0], StateStore(tmp_path))  # type: ignore[arg-type]
    rt.source = Buzzer()  # type: ignore[assignment]

    refused = rt.apply(Command({"stretch": "yoga"}))
    assert not refused.ok and refused.error == "no stretch session 'yoga' (known: desk_break, quick)"
    assert host.events == [] and not rt.coach.needs_ticks

    ok = rt.apply(Command({"stretch": "quick", "snooze_min": 5.0}))
    assert ok.ok and ok.applied == {"stretch": "reaching", "snooze_min": 5.0}
    assert host.events[:2] == ["stretch_start", "stretch_step_start"]
    assert rt.tracker._frames.interval_s == 0.1  # every tick while a session runs
    stretch = [doc for name, doc in host.retained_docs if name == "stretch"]
    assert stretch[-1]["session"] == "quick" and stretch[-1]["status"] == "reaching"
    assert rt.state_payload(rt.tracker.frame)["stretch"] == "reaching"

    # A coach event that asks for a buzz gets one; others do not.
    rt.on_event(Event(1.0, EventKind.STRETCH_REP_COMPLETE, {"haptic": 1}))
    rt.on_event(Event(2.0, EventKind.STRETCH_POSE_REACHED, {}))
    await asyncio.sleep(0)  # the buzz runs as a background task
    assert rt.source.levels == [1]  # type: ignore[attr-defined]

    stop = rt.apply(Command({"stretch": "stop"}))
    assert stop.applied == {"stretch": "abandoned"} and host.events[-1] == "stretch_abandoned"
    assert rt.tracker._frames.interval_s == 1.0
    snap = rt.snapshot()["coach"]
    assert snap["stretch_today"] == {"sessions": 0, "abandoned": 1, "bounce_cues": 0}
    again = rt.apply(Command({"stretch": "stop"}))
    assert not again.ok and again.error == "no stretch session is running"
    await host.history.drain(5.0)
    assert (tmp_path / "history" / "ana.json").exists()  # the abandoned session's history write


def test_a_runtime_hurries_the_daemons_loop_while_an_answer_or_a_session_is_due(tmp_path: Path) -> None:
    # The loop leaves dense I/O up to 50 ms only while no wearer hurries (daemon/wakeups.py).
    from slouchd.daemon.wakeups import CALM_QUANTUM_S, WAKE_QUANTUM_S, DaemonLoop, new_event_loop
    from slouchd.model import SampleBatch

    class Ends:
        """A source that streams nothing and ends (the sensor went away)."""

        async def __aenter__(self) -> Ends:
            return self

        async def __aexit__(self, *exc: object) -> None:
            pass

        def __aiter__(self) -> Ends:
            return self

        async def __anext__(self) -> SampleBatch:
            raise StopAsyncIteration

    async def main() -> None:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, DaemonLoop)
        pace = loop.wake_pace
        cfg = parse_config({"wearers": [{"name": "ana", "sensor": "simulated"}]})
        host = Host(cfg, tmp_path)
        host.open_source = lambda plan, settings: Ends()  # type: ignore[method-assign,assignment,return-value]
        rt = WearerRuntime(host, cfg.wearers[0], StateStore(tmp_path))  # type: ignore[arg-type]
        assert pace.quantum_s == CALM_QUANTUM_S
        assert rt.apply(Command({"calibrate": True})).ok  # the user waits for the answer
        assert pace.quantum_s == WAKE_QUANTUM_S
        await rt._stream()  # the stream ended: no sample can bring an alert or an answer now
        assert pace.quantum_s == CALM_QUANTUM_S
        assert rt.apply(Command({"stretch": "quick"})).ok  # a session's frames every tick
        assert pace.quantum_s == WAKE_QUANTUM_S
        rt.apply(Command({"stretch": "stop"}))
        assert pace.quantum_s == WAKE_QUANTUM_S  # (the calibration asked for still waits)
        await host.history.drain(5.0)

    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(main())
