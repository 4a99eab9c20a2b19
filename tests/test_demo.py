"""`slouchd demo` as a newcomer meets it: where the broker is, a tidy screen, plain words, and a
default run that shows both headline features (a slouch alert and a break reminder)."""

from __future__ import annotations

import io
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from slouchd.cli import CliError
from slouchd.commands.daemon import DEMO_DURATION_S, DEMO_SEED, DEMO_SPEED, demo_broker, demo_picture
from slouchd.config import Config
from slouchd.console import MAX_FRAMES, ConsoleView, RunLog, angle_words, event_words, fit, posture_words
from slouchd.model import Activity, Event, EventKind, Posture, PostureFrame
from slouchd.posture.settings import DetectionSettings
from slouchd.publish.settings import MqttSettings
from tests._broker import free_port
from tests.cli_helpers import run_cli

REPO = Path(__file__).resolve().parents[1]
T9 = 1_795_334_400.0  # some morning


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def frame(t: float, flexion: float | None, posture: Posture = Posture.UPRIGHT, lateral: float | None = 0.0,
          sitting_s: float = 0.0) -> PostureFrame:
    return PostureFrame(t, flexion, lateral, posture, Activity.STILL, True, True, sitting_s, 0.0)


# ----- the words -------------------------------------------------------------------------------

def test_leaning_back_is_not_called_upright() -> None:
    lean = frame(T9, -19.8)
    assert posture_words(lean) == "leaning back"
    assert angle_words(lean) == "20° back"
    assert posture_words(frame(T9, -3.0)) == "upright"
    assert angle_words(frame(T9, 24.4, Posture.SLOUCHING)) == "bent 24° forward"
    assert angle_words(frame(T9, 1.2)) == "straight (+1°)"
    assert angle_words(frame(T9, 1.0, lateral=-16.6)) == "straight (+1°), 17° to the left"


def test_no_bare_unknown_or_jargon_in_what_the_view_prints() -> None:
    out = FakeTty()
    view = ConsoleView(out, width=80)
    view.on_frame("demo", PostureFrame(T9, None, None, Posture.UNKNOWN, Activity.UNKNOWN, False, False))
    view.on_frame("demo", PostureFrame(T9 + 1, None, None, Posture.UNCALIBRATED, Activity.STILL, True, False))
    view.on_event("demo", Event(T9 + 5, EventKind.CALIBRATED, {
        "up": [0.0, 1.0, 0.0], "forward": None, "source": "auto", "axis_source": "mount",
        "reason": "automatic: first still window of 5 s upright for the mount"}))
    view.on_frame("demo", frame(T9 + 6, -19.8, sitting_s=6))
    text = out.getvalue()
    assert "unknown" not in text and "axis_source" not in text and "mount" not in text
    assert "no sensor data" in text and "calibrating" in text
    assert "calibrated: this still, upright posture is your 0°" in text
    assert "leaning back  20° back" in text and "upright" not in text.split("your 0°")[-1]


def test_event_lines_say_what_happened_in_words() -> None:
    alert = Event(T9, EventKind.SLOUCH_ALERT, {"level": 2, "flexion_deg": 24.9, "slouch_s": 150.0})
    assert event_words(alert) == "** SLOUCH ALERT 2 ** bent 25° forward for 2.5 min: sit up"
    assert event_words(Event(T9, EventKind.BREAK_REMINDER, {"sitting_min": 50.0})) \
        == "** BREAK REMINDER ** seated 50 min: stand up, walk 2 min"
    assert event_words(Event(T9, EventKind.SLOUCH_END, {"duration_s": 239.5, "max_flexion_deg": 25.2})) \
        == "slouch over after 4.0 min (deepest 25°)"
    taken = Event(T9, EventKind.BREAK_TAKEN, {"how": "break", "answered_reminder": True, "breaks_today": 2})
    assert event_words(taken) == ("break taken (a real break, answering the reminder): 2 today, "
                                  "sitting time starts again")
    words = "The posture sensor's battery is at 12 %: charge it soon."
    assert event_words(Event(T9, EventKind.LOW_BATTERY, {"text": words})) == words
    assert event_words(Event(T9, EventKind.STRETCH_START, {})) == "stretch start"


# ----- the screen ------------------------------------------------------------------------------

def status_lines(text: str) -> list[str]:
    """What each in-place redraw leaves on the line: the text after the last clear-line."""
    return [chunk.split("\n")[0] for chunk in text.split("\r\033[K")[1:]]


@pytest.mark.parametrize("width", [80, 60, 40])
def test_the_live_status_line_never_reaches_the_last_column(width: int) -> None:
    out = FakeTty()
    view = ConsoleView(out, width=width, show_wearer=True)
    for i in range(200):  # the widest case: a deep slouch, a side lean, long sitting, many alerts
        view.on_event("a-long-wearer-name", Event(T9 + i, EventKind.SLOUCH_ALERT,
                                                  {"level": 3, "flexion_deg": 35.0, "slouch_s": 900.0}))
        view.on_frame("a-long-wearer-name", frame(T9 + i, 35.0, Posture.SLOUCHING, lateral=-18.0,
                                                  sitting_s=60_000))
    lines = status_lines(out.getvalue())
    assert len(lines) >= 200
    assert max(len(line) for line in lines if "SLOUCH ALERT" not in line) <= width - 1
    assert all(line.startswith(("09:", "1", "0", "2")) for line in lines)  # the clock is never cut


def test_a_narrow_terminal_or_a_pipe_gets_plain_lines_not_redraws() -> None:
    for out, width in ((FakeTty(), 30), (io.StringIO(), 200)):
        view = ConsoleView(out, width=width, every_s=60.0)
        for i in range(600):
            view.on_frame("demo", frame(T9 + i, 3.0, sitting_s=i))
        text = out.getvalue()
        assert "\r" not in text and "\033" not in text
        assert len(text.splitlines()) == 10  # one line a simulated minute


def test_fit_drops_parts_from_the_end() -> None:
    assert fit(["09:00:00", "upright", "seated 3 min"], 20) == "09:00:00  upright"
    assert fit(["09:00:00", "upright"], 80) == "09:00:00  upright"


def test_the_run_log_for_the_picture_is_bounded() -> None:
    log = RunLog()
    for i in range(3 * MAX_FRAMES):
        log.add_frame("demo", frame(T9 + i, 1.0))
    assert len(log.frames) <= MAX_FRAMES
    times = [f.t_s for _, f in log.frames]
    assert times == sorted(times) and times[0] == T9 and times[-1] > T9 + 2.9 * MAX_FRAMES  # spans it all


def test_the_demo_picture_draws_the_run_and_a_sparkline(tmp_path: Path) -> None:
    log = RunLog()
    for i in range(600):  # ten minutes: upright, then a slouch past the threshold
        log.add_frame("demo", frame(T9 + i, 25.0 if i >= 300 else 1.0,
                                    Posture.SLOUCHING if i >= 300 else Posture.UPRIGHT))
    log.events.append(("demo", Event(T9 + 360, EventKind.SLOUCH_ALERT, {"level": 1})))
    drawn = demo_picture(log, tmp_path / "run.svg", DetectionSettings(threshold_deg=15.0), width=20)
    assert drawn is not None
    path, line = drawn
    svg = path.read_text()
    assert path == tmp_path / "run.svg" and svg.startswith("<svg") and "threshold 15" in svg
    assert "1 alert" in svg
    assert len(line) == 20 and line[0] != line[-1]  # low while upright, high while slouched


def test_an_empty_run_draws_no_picture(tmp_path: Path) -> None:
    assert demo_picture(RunLog(), tmp_path / "run.svg", DetectionSettings()) is None
    assert not (tmp_path / "run.svg").exists()


# ----- the broker ------------------------------------------------------------------------------

def test_an_explicit_port_that_is_taken_is_an_error_not_a_silent_move() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(CliError, match=f"--mqtt-port {port}: port {port} on 127.0.0.1 is in use"):
            demo_broker(MqttSettings(), None, port)
        # Only the default moves, and then it says so.
        mqtt, where = demo_broker(MqttSettings(port=port), None, None)
        assert mqtt.port != port
        assert where == f"the embedded broker at 127.0.0.1:{mqtt.port} ({port} is in use)"
    free = free_port()
    mqtt, where = demo_broker(MqttSettings(), None, free)
    assert (mqtt.host, mqtt.port, where) == ("", free, f"the embedded broker at 127.0.0.1:{free}")
    mqtt, where = demo_broker(MqttSettings(), "broker.lan", None)
    assert (mqtt.host, mqtt.port, where) == ("broker.lan", 1883, "the broker at broker.lan:1883")


def test_demo_with_a_taken_port_exits_non_zero_at_once() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        res = run_cli("demo", "--mqtt-port", str(port), cwd=REPO)
    assert res.returncode == 2
    assert res.stderr.startswith(
        f"slouchd demo: error: --mqtt-port {port}: port {port} on 127.0.0.1 is in use")
    assert "Traceback" not in res.stderr


def test_the_printed_mosquitto_sub_line_shows_the_demo_messages(tmp_path: Path) -> None:
    assert shutil.which("mosquitto_sub"), "the tests need mosquitto-clients (see the README)"
    port = free_port()
    demo = subprocess.Popen([sys.executable, "-m", "slouchd.cli", "demo", "--mqtt-port", str(port),
                             "--duration", "20"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=REPO)
    try:
        assert demo.stdout is not None
        head = [demo.stdout.readline() for _ in range(3)]
        assert head[1].startswith(f"MQTT: the embedded broker at 127.0.0.1:{port}; watch it with:")
        command = head[2].strip()
        assert command == f"mosquitto_sub -h 127.0.0.1 -p {port} -t 'slouchd/#' -v"
        # The line as printed (quotes and all), once the broker listens (as a user would paste it),
        # stopped after a few messages.
        for _ in range(100):
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        sub = subprocess.run(command + " -C 5 -W 15", shell=True, capture_output=True, text=True, timeout=30)
        topics = [line.split(" ", 1)[0] for line in sub.stdout.splitlines()]
        assert len(topics) == 5, sub.stderr
        assert all(t.startswith("slouchd/") for t in topics)
        demo.terminate()  # like Ctrl-C: the demo still ends with its summary and picture
        rest, _ = demo.communicate(timeout=30)
        picture = [line for line in rest.splitlines() if line.startswith("picture of the run: ")]
        assert picture, rest
        svg = Path(picture[0].removeprefix("picture of the run: ").strip())
        assert svg.read_text().startswith("<svg")
        assert any(line.startswith("flexion:   ") for line in rest.splitlines())
    finally:
        if demo.poll() is None:
            demo.terminate()
            demo.communicate(timeout=30)


# ----- the default run -------------------------------------------------------------------------

def test_the_default_run_reaches_a_slouch_alert_and_a_break_reminder() -> None:
    """The defaults (speed x duration of the seed's day) cover an alert and a break reminder.

    Run offline through the daemon's own tracker, without the wall clock: what the default
    demo shows when the machine keeps up. The real run's start-up (imports, broker) takes a few
    seconds of the minute, hence the 10% margin.
    """
    from slouchd.daemon import new_tracker
    from slouchd.sensors.simulated import SimSettings, SimulatedWearer

    config = Config()
    wearer = SimulatedWearer(SimSettings(seed=DEMO_SEED))
    tracker = new_tracker(config, config.detection, SimSettings().mount)
    shown_s = 0.9 * DEMO_SPEED * DEMO_DURATION_S
    kinds: dict[str, float] = {}
    for batch in wearer.batches(chunk_s=60, end_s=shown_s):
        for event in tracker.process(batch).events:
            kinds.setdefault(event.kind.value, event.t_s - wearer.settings.start_s)
    assert kinds["slouch_alert"] < 0.2 * shown_s
    assert config.wellbeing.break_after_min * 60 <= kinds["break_reminder"] < shown_s


def test_demo_help_states_the_defaults() -> None:
    res = run_cli("demo", "--help", cwd=REPO)
    text = re.sub(r"\s+", " ", res.stdout)
    assert f"(default {DEMO_SPEED:g})" in text and f"(default {DEMO_DURATION_S:g})" in text
    assert "break reminder" in text and "mosquitto_sub" in text
