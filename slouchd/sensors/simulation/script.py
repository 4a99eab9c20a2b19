"""The scripted day: which episodes happen when, and the smooth channels that realise them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from slouchd.model import Mount
from slouchd.sensors.simulation.frames import r_wb, stick_on_matrix
from slouchd.sensors.simulation.knots import Knots

FIRST_CLEAR_SLOUCH_BY_S = 300.0
"""Guarantee: every scripted day has a slouch of at least ``CLEAR_SLOUCH_MIN_DEG`` whose plateau
starts before this many seconds after the day's first sample and is held at least
``CLEAR_SLOUCH_MIN_HOLD_S``; a 30 s dwell therefore alerts within the first 10 simulated minutes."""
CLEAR_SLOUCH_MIN_DEG = 22.0
CLEAR_SLOUCH_MIN_HOLD_S = 120.0
first_alert_bound_s = FIRST_CLEAR_SLOUCH_BY_S + 30.0
"""Latest time (s after the first sample) by which a 30 s-dwell detector should have alerted."""

KINDS = (
    "upright", "slouch", "reach", "type_arms", "stand_up", "standing", "walk", "sit_down",
    "lean_back", "lean_side", "take_off", "off_desk", "put_on", "fast_move", "gap",
)
"""Episode kinds. ``gap`` only appears in :attr:`SimulatedWearer.radio_gaps`."""

_STAND_RISE_M = 0.42
"""How much higher the hips are standing than sitting, metres."""


@dataclass(frozen=True)
class Episode:
    """One ground-truth segment of the scripted day.

    Attributes:
        start_s: start, seconds after the first sample of day 0 (the transition into this
            episode's pose, if any, is the first ``ramp_s`` of it).
        end_s: end, seconds after the first sample of day 0 (exclusive).
        kind: one of :data:`KINDS`.
        flexion_deg: plateau (or peak, for reach / stand_up / sit_down) thoracic flexion relative
            to the wearer's upright, degrees, + = forward; NaN while the sensor is not worn.
        lateral_deg: plateau lateral lean, degrees, + = toward the wearer's right; NaN if not worn.
        ramp_s: how long the transition into the plateau takes from ``start_s``, seconds.
    """

    start_s: float
    end_s: float
    kind: str
    flexion_deg: float
    lateral_deg: float
    ramp_s: float = 0.0

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    @property
    def plateau_start_s(self) -> float:
        return self.start_s + self.ramp_s


CHANNELS = ("flex", "lat", "yaw", "hip_z", "hip_x", "gait", "desk", "worn", "typing", "stand")
"""Smoothly scripted quantities: flexion/lateral/yaw (deg), hip height/forward shift (m), gait
envelope (0..1), desk (0 = on the back, 1 = lying on the desk), worn (1 = breathing micro-motion
present), typing (0..1 keystroke micro-motion), stand (0..1 standing postural sway)."""


@dataclass(frozen=True)
class Walk:
    """Gait of one walk: step rate in Hz, walking speed in m/s, phase of the first step in rad."""

    step_hz: float
    speed_mps: float
    phase: float


class DayScript:
    """One scripted day: the episodes and the smooth channels that realise them.

    Times are seconds from the start of this day. Built once from its own seeded generator.
    """

    def __init__(self, seed: int, day_s: float, inclination_deg: float | None,
                 twist_deg: float | None, mount: Mount, restick_deg: float = 4.0,
                 fast_moves: bool = False) -> None:
        self.rng = np.random.default_rng([seed, 0x5EED])
        self.fast_moves = fast_moves
        self.day_s = day_s
        self.mount = mount
        self.restick_deg = restick_deg
        rng = self.rng
        self.knots = {name: Knots() for name in CHANNELS}
        for name in CHANNELS:
            self.knots[name].add(0.0, 1.0 if name == "worn" else 0.0)
        self.episodes: list[Episode] = []
        self.walks: dict[int, Walk] = {}  # episode index -> gait parameters
        self.sessions: list[np.ndarray] = []  # sensor-to-body rotation per wearing session
        self.desk: dict[int, np.ndarray] = {}  # off_desk/take_off/put_on episode -> sensor-to-world
        self.session_of: list[int] = []  # per episode
        self.t = 0.0
        incl = float(rng.uniform(10, 30)) if inclination_deg is None else inclination_deg
        twist = float(rng.uniform(-10, 10)) if twist_deg is None else twist_deg
        self.stick_on = [(incl, twist)]
        self.sessions.append(stick_on_matrix(mount, incl, twist))
        # The wearer's own rhythms: breathing and small postural sway, different every seed.
        self.breath_hz = float(rng.uniform(0.2, 0.3))
        self.breath_deg = float(rng.uniform(0.25, 0.5))
        self.sway = rng.uniform(0.0, 2 * np.pi, size=16)
        self._build()
        self.frozen = {name: k.freeze() for name, k in self.knots.items()}
        self.ep_start = np.array([e.start_s for e in self.episodes])
        self.ep_kind = np.array([e.kind for e in self.episodes])
        self.ep_session = np.array(self.session_of)
        self.desk_rot = np.stack([self.desk.get(i, np.eye(3)) for i in range(len(self.episodes))])

    # -- helpers -------------------------------------------------------------------------

    def _u(self, lo: float, hi: float) -> float:
        return float(self.rng.uniform(lo, hi))

    def _episode(self, kind: str, dur: float, flex: float, lat: float, ramp: float = 0.0) -> int:
        start = self.t
        end = min(start + dur, self.day_s)
        self.episodes.append(Episode(start, end, kind, flex, lat, ramp))
        self.session_of.append(len(self.sessions) - 1)
        self.t = end
        return len(self.episodes) - 1

    def _pose(self, at: float, flex: float | None = None, lat: float | None = None, **others: float) -> None:
        """Hold every channel until ``self.t`` then move the given ones to reach values at ``at``."""
        values = dict(others)
        if flex is not None:
            values["flex"] = flex
        if lat is not None:
            values["lat"] = lat
        for name, k in self.knots.items():
            k.hold_to(self.t)
            if name in values:
                k.add(at, values[name])

    def _hold(self, dur: float) -> None:
        for k in self.knots.values():
            k.hold_to(self.t + dur)

    @property
    def _left(self) -> float:
        return self.day_s - self.t

    # -- seated activities ---------------------------------------------------------------

    def upright(self, dur: float, ramp: float | None = None) -> None:
        ramp = min(self._u(3, 8), 0.5 * dur) if ramp is None else ramp
        flex, lat = (0.0, 0.0) if not self.episodes else (self._u(-1.0, 1.0), self._u(-1.0, 1.0))
        self._pose(self.t + ramp, flex=flex, lat=lat, typing=0.0)
        i = self._episode("upright", dur, flex, lat, ramp)
        self._hold(self.episodes[i].end_s - self.t)

    def slouch(self, depth: float, hold: float, ramp: float) -> None:
        lat = self._u(-2.0, 2.0)
        self._pose(self.t + ramp, flex=depth, lat=lat)
        self._episode("slouch", ramp + hold, depth, lat, ramp)
        self._hold(0.0)

    def reach(self) -> None:
        # A cup is reached for in about a second and brought back as fast.
        peak, up, hold, down = self._u(30, 60), self._u(0.7, 1.2), self._u(0.2, 1.5), self._u(0.7, 1.2)
        base_flex, base_lat = self.knots["flex"].last, self.knots["lat"].last
        lat = self._u(-5, 5)
        self._pose(self.t + up, flex=peak, lat=lat, hip_x=0.05)
        self.knots["flex"].add(self.t + up + hold, peak)
        for name, value in (("flex", base_flex), ("lat", base_lat), ("hip_x", 0.0)):
            self.knots[name].hold_to(self.t + up + hold)
            self.knots[name].add(self.t + up + hold + down, value)
        self._episode("reach", up + hold + down, peak, lat, up)
        self._hold(0.0)

    def type_arms(self, dur: float) -> None:
        ramp = self._u(2, 5)
        flex = self._u(2, 6)
        self._pose(self.t + ramp, flex=flex, lat=0.0, typing=1.0)
        self._episode("type_arms", dur, flex, 0.0, ramp)
        self._hold(0.0)

    def fast_move(self) -> None:
        """A quick bend, lean and twist about a random axis (turning to someone, grabbing a file):
        out in 0.25-0.6 s at a peak rate of 150-400 deg/s, held 0.3-2 s, and back as fast."""
        k = self.knots
        base = {"flex": k["flex"].last, "lat": k["lat"].last, "yaw": k["yaw"].last}
        go, back = self._u(0.25, 0.6), self._u(0.25, 0.6)
        # Smootherstep's peak slope is 1.875 / duration: the angle that gives the peak rate.
        angle = self._u(150, 400) * go / 1.875
        d = self.rng.normal(size=3)
        d *= angle / float(np.linalg.norm(d))
        flex = float(np.clip(base["flex"] + d[0], -25.0, 50.0))
        lat = float(np.clip(base["lat"] + d[1], -30.0, 30.0))
        yaw = base["yaw"] + float(d[2])
        back = max(back, 1.875 * angle / 400.0)  # no faster back than out
        hold = self._u(0.3, 2.0)
        self._pose(self.t + go, flex=flex, lat=lat, yaw=yaw, typing=0.0)
        for name, value in base.items():
            k[name].hold_to(self.t + go + hold)
            k[name].add(self.t + go + hold + back, value)
        self._episode("fast_move", go + hold + back, flex, lat, go)
        self._hold(0.0)

    def lean_back(self, dur: float) -> None:
        ramp, flex = self._u(2, 6), -self._u(10, 20)
        self._pose(self.t + ramp, flex=flex, lat=0.0)
        self._episode("lean_back", dur, flex, 0.0, ramp)
        self._hold(0.0)

    def lean_side(self, dur: float) -> None:
        ramp = self._u(2, 6)
        lat = self._u(10, 20) * (1 if self.rng.random() < 0.5 else -1)
        self._pose(self.t + ramp, flex=0.0, lat=lat)
        self._episode("lean_side", dur, 0.0, lat, ramp)
        self._hold(0.0)

    # -- getting up and about ------------------------------------------------------------

    def stand_up(self) -> None:
        dur, peak = self._u(1.6, 3.0), self._u(30, 45)
        t0 = self.t
        self._pose(t0 + 0.4 * dur, flex=peak, lat=0.0, hip_x=0.12)
        stand_flex = self._u(0, 3)
        for name, value in (("flex", stand_flex), ("hip_x", 0.2)):
            self.knots[name].add(t0 + dur, value)
        self.knots["hip_z"].hold_to(t0 + 0.25 * dur)
        self.knots["hip_z"].add(t0 + dur, _STAND_RISE_M)
        self.knots["stand"].hold_to(t0 + 0.5 * dur)
        self.knots["stand"].add(t0 + dur, 1.0)
        self._episode("stand_up", dur, peak, 0.0, 0.4 * dur)
        self._hold(0.0)

    def standing(self, dur: float) -> None:
        flex = self.knots["flex"].last
        self._episode("standing", dur, flex, 0.0, 0.0)
        self._hold(0.0)

    def walk(self, dur: float) -> None:
        ramp = 1.5
        flex = self._u(2, 6)
        self._pose(self.t + ramp, flex=flex, lat=0.0, gait=1.0)
        i = self._episode("walk", dur, flex, 0.0, ramp)
        end = self.episodes[i].end_s
        self.walks[i] = Walk(self._u(1.75, 2.05), self._u(1.1, 1.5), self._u(0, 2 * np.pi))
        # Corridors end: turn every so often.
        yaw = self.knots["yaw"]
        t = self.episodes[i].start_s + ramp + self._u(10, 40)
        while t + 4.0 < end - ramp:
            turn_s = self._u(2.0, 3.5)
            yaw.hold_to(t)
            yaw.add(t + turn_s, yaw.last + self._u(90, 180) * (1 if self.rng.random() < 0.5 else -1))
            t += turn_s + self._u(15, 60)
        for name, k in self.knots.items():
            k.hold_to(end - ramp)
            if name == "gait":
                k.add(end, 0.0)
            else:
                k.hold_to(end)

    def sit_down(self) -> None:
        dur, peak = self._u(1.8, 3.0), self._u(30, 45)
        t0 = self.t
        self._pose(t0 + 0.5 * dur, flex=peak, lat=0.0, hip_x=0.1)
        self.knots["flex"].add(t0 + dur, self._u(-1, 1))
        self.knots["hip_x"].add(t0 + dur, 0.0)
        self.knots["hip_z"].hold_to(t0 + 0.2 * dur)
        self.knots["hip_z"].add(t0 + 0.9 * dur, 0.0)
        self.knots["stand"].add(t0 + 0.5 * dur, 0.0)
        self._episode("sit_down", dur, peak, 0.0, 0.5 * dur)
        self._hold(0.0)

    def get_up_and_walk(self, walk_s: float) -> None:
        """Stand up, walk ``walk_s`` seconds, sit down. Walks under 2 min stay under 2 min on
        the feet in all (so they are clearly not a break)."""
        short = walk_s < 120
        self.stand_up()
        self.standing(self._u(5, 15) if short else self._u(5, 40))
        self.walk(min(walk_s, 80.0) if short else walk_s)
        self.standing(self._u(5, 15) if short else self._u(5, 30))
        self.sit_down()

    def off_desk(self, dur: float) -> None:
        """Take the sensor off, leave it on the desk, put it back on (slightly differently)."""
        nan = float("nan")
        take = self._u(3, 6)
        desk = self._desk_orientation()
        self._pose(self.t + take, desk=1.0, worn=0.0)
        i = self._episode("take_off", take, nan, nan, take)
        self.desk[i] = desk
        i = self._episode("off_desk", dur, nan, nan, 0.0)
        self.desk[i] = desk
        self._hold(0.0)
        incl, twist = self.stick_on[-1]
        r = self.restick_deg
        incl, twist = incl + self._u(-r, r), twist + self._u(-r, r)
        self.stick_on.append((incl, twist))
        self.sessions.append(stick_on_matrix(self.mount, incl, twist))
        put = self._u(4, 8)
        self._pose(self.t + put, desk=0.0, worn=1.0, flex=0.0, lat=0.0)
        i = self._episode("put_on", put, nan, nan, put)
        self.desk[i] = desk
        self._hold(0.0)

    def _desk_orientation(self) -> np.ndarray:
        """Sensor-to-world rotation of a sensor lying on a desk: on its face, its back or its
        side, at a random heading, on a desk tilted a fraction of a degree."""
        out = self.mount.out_vector
        up = self.mount.up_vector
        side = np.cross(up, out)
        choice = self.rng.integers(0, 3)
        facing = (-out, out, side)[choice]  # which sensor axis points to the sky
        rot, _ = Rotation.align_vectors([[0.0, 0.0, 1.0]], [facing])
        tilt = Rotation.from_rotvec(np.r_[self.rng.normal(0, 0.005, 2), 0.0])
        # Taking off and putting on turn the sensor from the back to the desk along the shortest
        # rotation; keep that well short of 180 degrees so its axis is never ambiguous.
        k = self.knots
        worn = Rotation.from_matrix(r_wb(*np.radians([[k["yaw"].last], [k["lat"].last], [k["flex"].last]]))[0]
                                    @ self.sessions[-1])
        headings = self._u(0, 10) + np.arange(0.0, 360.0, 10.0)
        desks = [tilt * Rotation.from_euler("z", h, degrees=True) * rot for h in headings]
        turn = np.array([np.degrees((worn.inv() * d).magnitude()) for d in desks])
        fine = np.flatnonzero(turn < 140.0)
        pick = self.rng.choice(fine) if len(fine) else int(np.argmin(turn))
        return desks[pick].as_matrix()

    # -- the day -------------------------------------------------------------------------

    def _seated_block(self, until: float) -> None:
        """Seated work until ``until``: upright stretches broken by slouches, reaches, typing..."""
        until = min(until, self.day_s)
        while self.t < until - 30:
            left = until - self.t
            self.upright(min(left, self._u(20, 300)))
            if self.t >= until - 30:
                break
            if self.fast_moves and self.rng.random() < 0.35:
                self.fast_move()
                continue
            r = self.rng.random()
            left = until - self.t
            if r < 0.25:
                self.slouch(self._u(18, 35), min(left, self._u(20, 600)), self._u(5, 30))
            elif r < 0.40:
                self.slouch(self._u(8, 12), min(left, self._u(60, 600)), self._u(5, 30))
            elif r < 0.55:
                self.reach()
            elif r < 0.70:
                self.type_arms(min(left, self._u(60, 360)))
            elif r < 0.82:
                self.lean_back(min(left, self._u(30, 300)))
            else:
                self.lean_side(min(left, self._u(20, 180)))

    def _build(self) -> None:
        # Start upright and still so calibration can happen at the first still window, then
        # the first clear slouch well inside the first five minutes.
        self.upright(self._u(40, 90), ramp=0.0)
        if self.rng.random() < 0.5:
            self.type_arms(self._u(20, 40))
            self.upright(self._u(15, 30))
        else:
            self.upright(self._u(5, 10))
            self.reach()
            self.upright(self._u(15, 40))
        ramp = self._u(8, 20)
        depth = self._u(CLEAR_SLOUCH_MIN_DEG + 1, 30)
        self.slouch(depth, self._u(CLEAR_SLOUCH_MIN_HOLD_S + 30, 300), ramp)
        # A first long sitting stretch (> 50 min) so break reminders fire early in the day.
        self._seated_block(self._u(55, 70) * 60)
        stretch = 0
        lunch = False
        while self._left > 900:
            kind = self.rng.random()
            if stretch == 0:
                self.get_up_and_walk(self._u(150, 480))  # the first real break
            elif stretch == 1 and self._left > 1500:
                # Every day of 3 h or more has one.
                self.off_desk(self._u(300, min(1500, self._left - 900)))
            elif not lunch and self.t > 0.45 * self.day_s and self._left > 3600:
                lunch = True
                self.get_up_and_walk(self._u(480, 900))
            elif kind < 0.5 or (kind >= 0.8 and self._left < 2400):
                self.get_up_and_walk(self._u(120, 480))
            elif kind < 0.65:
                self.get_up_and_walk(self._u(30, 80))  # too short to count as a break
            elif kind < 0.8:
                self.stand_up()
                self.standing(self._u(20, 110))
                self.sit_down()
            else:
                self.off_desk(self._u(120, 1800))
            stretch += 1
            self.upright(self._u(30, 60))
            # A second long sitting stretch (> 50 min) later in the day.
            minutes = self._u(52, 65) if stretch == 3 else self._u(8, 40)
            self._seated_block(self.t + minutes * 60)
        if self._left > 0:
            self.upright(self._left)
        for k in self.knots.values():
            k.hold_to(self.day_s + 1.0)

    # -- evaluation ----------------------------------------------------------------------
