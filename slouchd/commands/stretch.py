"""``slouchd stretch``: run a guided stretch session's judge over a recording; list or check catalogues.

Output (JSON Lines on stdout): the judge's events ``{"t", "event": "stretch_...", ...}`` stamped
with the recording time at which the live daemon would emit them, optional state records
``{"t", "stretch": {...}}`` every ``--every`` seconds, and a last ``{"t", "result": {...}}`` line
with the whole session. A session still running when the recording ends is abandoned ("the
recording ended"). Bad input (CSV line, option, catalogue) is one line on stderr and exit code 2.

With ``--wearer NAME`` it starts the session on a live wearer of the running daemon instead (its
MQTT command) and follows it: :mod:`slouchd.commands.stretch_live`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from typing import Any

from slouchd.cli import CliError
from slouchd.commands.replay import add_input_options, load_inputs, make_tracker, run_tracker, seconds_arg
from slouchd.model import Activity, PostureFrame
from slouchd.posture import stretch as sj
from slouchd.posture.stretch_catalog import StretchCatalog
from slouchd.sensors.recording import RecordingError, read_recording
from slouchd.stretches import load_catalog

FRAME_S = 0.1
"""The judge runs on every tick: the tracker is asked for a frame every 0.1 s."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "stretch", help="guided stretches: on a live wearer (--wearer) or judged on a recording",
        description="Run the guided stretch judge over a recording (CSV with header t,ax,ay,az[,gx,gy,gz]) "
                    "and print JSON Lines of its events: step start, pose reached, no-bouncing and "
                    "ease-off cues, repetition and step complete, session complete or abandoned. "
                    "--list shows the catalogue's sessions, --check validates a catalogue file. "
                    "With --wearer NAME, start (or --stop) the session on a live wearer of the "
                    "running daemon (the MQTT command Home Assistant's button sends) and follow it.")
    p.add_argument("--recording", metavar="FILE.csv", help="the recording to judge ('-' = stdin)")
    p.add_argument("--session", metavar="NAME", help="which session of the catalogue (default: the first)")
    p.add_argument("--catalog", metavar="FILE", help="stretch catalogue (default: the built-in "
                                                      "config/stretches.toml)")
    add_input_options(p, "activity.motion_hold_s=1",
                      "sensor axes toward the head and out of the back (side bends and extension need "
                      "the forward axis: give the mount unless the recording teaches it)")
    p.add_argument("--start-at", metavar="SECONDS", type=seconds_arg, dest="start_at",
                   help="recording time the session starts (default: as soon as the tracker is calibrated)")
    p.add_argument("--every", metavar="SECONDS", type=seconds_arg, default=0.0,
                   help="also print the step's state every SECONDS (default 0: events only)")
    p.add_argument("--wearer", metavar="NAME",
                   help="a live wearer of the running daemon (its --config gives the broker)")
    p.add_argument("--stop", action="store_true", help="with --wearer: stop the session that runs")
    p.add_argument("--timeout", metavar="SECONDS", type=seconds_arg, default=900.0,
                   help="with --wearer: give up after this long (default 900)")
    p.add_argument("--list", action="store_true", help="list the catalogue's sessions and stretches")
    p.add_argument("--check", metavar="FILE", help="validate a stretch catalogue file and exit")
    p.set_defaults(func=run)


def _dump(d: dict[str, Any]) -> str:
    return json.dumps(d, separators=(", ", ": "))


def run(args: argparse.Namespace) -> int:
    if args.check:
        cat = load_catalog(args.check)
        print(f"{args.check}: ok: {len(cat.stretches)} stretch(es), {len(cat.sessions)} session(s): "
              + ", ".join(s.name for s in cat.sessions))
        return 0
    catalog = load_catalog(args.catalog)
    if args.list:
        _list(catalog)
        return 0
    if args.wearer:
        return _live(args)
    if not args.recording:
        raise CliError("--recording FILE.csv is needed (judging a live wearer is started through the "
                       "daemon: MQTT command or Home Assistant button)")
    try:
        session = catalog.session(args.session)
    except KeyError:
        raise CliError(f"--session {args.session}: no such session (have: "
                       f"{', '.join(s.name for s in catalog.sessions)})") from None
    cfg, mount = load_inputs(args)
    try:
        rec = read_recording(args.recording)
    except RecordingError as err:
        raise CliError(str(err)) from None
    tracker = make_tracker(cfg, mount, FRAME_S, None)
    frames = (f for chunk in run_tracker(rec, tracker, None) for f in chunk.frames)
    out = sys.stdout
    result = judge_frames(frames, catalog, session.name, args.start_at, args.every,
                          lambda d: out.write(_dump(d) + "\n"))
    out.flush()
    if result is None:
        sys.stderr.write(f"slouchd stretch: warning: {args.recording}: no session judged: the tracker "
                         "never calibrated (no still window)"
                         + ("" if args.start_at is None else f" at or after t = {args.start_at:g} s") + "\n")
    return 0


def _live(args: argparse.Namespace) -> int:
    import asyncio

    from slouchd.commands.stretch_live import follow

    if args.recording:
        raise CliError("--wearer and --recording: one or the other")
    cfg, _ = load_inputs(args)
    value = "stop" if args.stop else (args.session or "start")
    return asyncio.run(follow(cfg, args.wearer, value, args.timeout))


def judge_frames(frames: Iterator[PostureFrame], catalog: StretchCatalog, session: str,
                 start_at: float | None, every_s: float, emit: Any,
                 settings: sj.StretchSettings | None = None) -> dict[str, Any] | None:
    """Run one session's judge over tracker frames (0.1 s apart); ``emit`` gets each output record.

    The session starts at the first calibrated frame at or after ``start_at``. Returns the session's
    result, or None when it never started.
    """
    steps = catalog.steps_of(catalog.session(session))
    judge: sj.StretchJudge | None = None
    next_state = 0.0
    last_t = 0.0
    for f in frames:
        last_t = f.t_s
        if judge is None:
            if not f.calibrated or (start_at is not None and f.t_s < start_at - 1e-9):
                continue
            judge = sj.StretchJudge(steps, settings, session=session, t_start_s=f.t_s)
            events = judge.start()
            next_state = f.t_s
        else:
            events = judge.update(f.t_s, f.flexion_deg, f.lateral_deg, f.activity is Activity.STILL, f.worn)
        for e in events:
            emit(e.to_dict())
        if every_s > 0 and f.t_s >= next_state - 1e-9 and not judge.done:
            emit({"t": round(f.t_s, 3), "stretch": judge.state()})
            next_state += every_s
        if judge.done:
            break
    if judge is None:
        return None
    if not judge.done:
        for e in judge.stop(last_t, "the recording ended"):
            emit(e.to_dict())
    result = judge.result()
    emit({"t": round(judge.t_s, 3), "result": result})
    return result


def _list(catalog: StretchCatalog) -> None:
    for s in catalog.sessions:
        print(f"session {s.name}: {s.title or s.name}: {' -> '.join(s.steps)}")
    for st in catalog.stretches:
        target = (f"within {st.max_deg:g} deg of upright" if st.direction == "squeeze"
                  else f"{st.min_deg:g}-{st.max_deg:g} deg")
        print(f"stretch {st.name}: {st.direction} {target}, hold {st.hold_s:g} s x {st.repetitions}, "
              f"rest {st.rest_s:g} s: {st.instruction}")
