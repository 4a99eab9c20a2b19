"""What the sensor feels: the scripted day turned into orientation, position, acceleration and
angular rate at any time."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from slouchd.sensors.simulation.frames import G_MPS2, r_wb, trunk_up, vee_rate
from slouchd.sensors.simulation.knots import eval_knots
from slouchd.sensors.simulation.script import CHANNELS, DayScript

_FD_H_S = 1e-3
"""Half-step of the central differences that give angular rates and accelerations, seconds:
small against every motion here (fastest is ~6 Hz), large against float rounding."""
_TRUNK_RADIUS_M = 0.42
"""Hip joint to the sensor between the shoulder blades, metres: bending swings the sensor on it."""


class DayMotion(DayScript):
    """A scripted day that can say, at any time, how the trunk and the sensor move."""

    def channel(self, name: str, t: np.ndarray) -> np.ndarray:
        kt, kv = self.frozen[name]
        return eval_knots(kt, kv, t)

    def episode_index(self, t: np.ndarray) -> np.ndarray:
        return np.clip(np.searchsorted(self.ep_start, t, side="right") - 1, 0, len(self.episodes) - 1)

    def body_angles(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """True trunk flexion, lateral lean and yaw in degrees at day times ``t`` (seconds),
        with the scripted channels they were built from."""
        ch = {name: self.channel(name, t) for name in CHANNELS}
        s = self.sway
        worn, typing, stand, gait = ch["worn"], ch["typing"], ch["stand"], ch["gait"]
        tau = 2 * np.pi * t
        # Breathing: a slowly wandering rate; the thorax rocks a fraction of a degree.
        breath = np.sin(tau * self.breath_hz + 0.6 * np.sin(tau * 0.011 + s[0]) + s[1])
        # Postural sway (larger standing) and the heartbeat's tiny ballistic kick.
        sway_gain = 0.12 + 0.4 * stand
        sway_f = (np.sin(tau * 0.063 + s[2]) + 0.7 * np.sin(tau * 0.17 + s[3])
                  + 0.4 * np.sin(tau * 0.41 + s[4]))
        sway_l = (np.sin(tau * 0.051 + s[5]) + 0.6 * np.sin(tau * 0.23 + s[6]))
        heart = 0.02 * np.sin(tau * 1.15 + s[7])
        keys = typing * 0.08 * (np.sin(tau * 4.3 + s[8]) + np.sin(tau * 6.1 + s[9]))
        micro_f = worn * (self.breath_deg * breath + sway_gain * sway_f + heart + keys)
        micro_l = worn * (0.5 * sway_gain * sway_l + 0.5 * keys)
        flex = ch["flex"] + micro_f
        lat = ch["lat"] + micro_l
        yaw = ch["yaw"].copy()
        if gait.any():
            step_hz, phase, _ = self._gait_params(t)
            ph = tau * step_hz + phase
            flex += gait * 1.0 * np.sin(ph + 0.8)
            lat += gait * 1.5 * np.sin(0.5 * ph)
            yaw += gait * 3.0 * np.sin(0.5 * ph + 1.2)
        return flex, lat, yaw, ch

    def _gait_params(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Step rate (Hz), gait phase (rad) and walking speed (m/s) at day times ``t``."""
        ep = self.episode_index(t)
        step = np.full(t.shape, 1.9)
        phase = np.zeros(t.shape)
        speed = np.zeros(t.shape)
        for i, w in self.walks.items():
            m = ep == i
            step[m], phase[m], speed[m] = w.step_hz, w.phase, w.speed_mps
        return step, phase, speed

    def _position(self, t: np.ndarray, flex: np.ndarray, lat: np.ndarray, yaw: np.ndarray,
                  ch: dict[str, np.ndarray]) -> np.ndarray:
        """Sensor position in metres (n, 3) on the back at day times ``t``, from the trunk angles
        (degrees); steady walking progress is left out (added as an acceleration instead)."""
        yaw0 = np.radians(ch["yaw"])
        heading = np.stack([np.cos(yaw0), np.sin(yaw0), np.zeros_like(yaw0)], -1)
        pos = trunk_up(np.radians(yaw), np.radians(lat), np.radians(flex)) * _TRUNK_RADIUS_M
        pos += heading * ch["hip_x"][:, None]
        pos[:, 2] += ch["hip_z"]
        gait = ch["gait"]
        if gait.any():
            step_hz, phase, _ = self._gait_params(t)
            w = 2 * np.pi * step_hz
            ph = w * t + phase
            # Vertical bounce ~0.25 g, fore-aft ~0.1 g at the step rate; side sway ~0.08 g at the
            # stride rate (half the step rate); a heel-strike harmonic.
            up = -(0.25 * G_MPS2 / w**2) * np.cos(ph) - (0.06 * G_MPS2 / (2 * w) ** 2) * np.cos(2 * ph + 0.5)
            fwd = -(0.10 * G_MPS2 / w**2) * np.cos(ph + 1.3)
            side = -(0.08 * G_MPS2 / (0.5 * w) ** 2) * np.cos(0.5 * ph + 0.3)
            left = np.stack([-heading[:, 1], heading[:, 0], np.zeros_like(gait)], -1)
            pos += gait[:, None] * (heading * fwd[:, None] + left * side[:, None])
            pos[:, 2] += gait * up
        return pos

    def sensor_state(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Sensor-to-world rotations (n, 3, 3), sensor positions (n, 3) in metres and the scripted
        channels at day times ``t``. The general (slow) path: any pose, on the back or not."""
        flex, lat, yaw, ch = self.body_angles(t)
        trunk = r_wb(np.radians(yaw), np.radians(lat), np.radians(flex))
        r_ws = trunk @ np.stack(self.sessions)[self.ep_session[self.episode_index(t)]]
        pos = self._position(t, flex, lat, yaw, ch)
        desk = ch["desk"]
        handled = desk > 0
        if handled.any():
            r_ws[handled], pos[handled] = self._handled(t[handled], desk[handled], r_ws[handled],
                                                        pos[handled])
        return r_ws, pos, ch

    def imu(self, t: np.ndarray, gyro: bool = True, exact: bool = False
            ) -> tuple[np.ndarray, np.ndarray | None]:
        """Noise-free specific force (g) and angular rate (deg/s) in the sensor frame at day
        times ``t``, shape (n, 3) each.

        The fast path differentiates the trunk angles and positions only (central differences of
        +-``_FD_H_S``) and uses the closed-form angular velocity of the yaw-lateral-flexion
        rotation; samples where the sensor is handled or on the desk, or all samples with
        ``exact``, differentiate the full sensor orientation instead (slower, same physics).
        """
        n, h = len(t), _FD_H_S
        tt = np.concatenate([t - h, t, t + h])
        flex, lat, yaw, ch = self.body_angles(tt)
        pos = self._position(tt, flex, lat, yaw, ch)
        mid, after = slice(n, 2 * n), slice(2 * n, 3 * n)
        before = slice(0, n)
        acc_w = (pos[after] - 2 * pos[mid] + pos[before]) / (h * h)
        gait = ch["gait"][mid]
        if gait.any():
            yaw_rate = np.radians(ch["yaw"][after] - ch["yaw"][before]) / (2 * h)
            gait_rate = (ch["gait"][after] - ch["gait"][before]) / (2 * h)
            acc_w += self.walk_acceleration(t, gait, gait_rate, yaw_rate, ch["yaw"][mid])
        specific = acc_w / G_MPS2
        specific[:, 2] += 1.0
        fl, la, ya = np.radians(flex[mid]), np.radians(lat[mid]), np.radians(yaw[mid])
        r_bs = np.stack(self.sessions)[self.ep_session[self.episode_index(t)]]
        r_ws = r_wb(ya, la, fl) @ r_bs
        acc = np.einsum("nji,nj->ni", r_ws, specific)
        omega = None
        if gyro:
            d_fl, d_la, d_ya = (np.radians(x[after] - x[before]) / (2 * h) for x in (flex, lat, yaw))
            cy, sy, cx, sx = np.cos(fl), np.sin(fl), np.cos(la), np.sin(la)
            # Body angular velocity of Rz(yaw) Rx(lat) Ry(flex) from the angle rates.
            w_b = np.stack([cy * d_la - sy * cx * d_ya, d_fl + sx * d_ya, sy * d_la + cy * cx * d_ya], -1)
            omega = np.degrees(np.einsum("nji,nj->ni", r_bs, w_b))
        desk = np.stack([ch["desk"][before], ch["desk"][mid], ch["desk"][after]])
        lying = np.all(desk == 1.0, axis=0)
        if lying.any() and not exact:
            # Still on the desk: gravity only, no rotation.
            r_desk = self.desk_rot[self.episode_index(t[lying])]
            acc[lying] = r_desk[:, 2, :]
            if omega is not None:
                omega[lying] = 0.0
        slow = np.any(desk > 0, axis=0) & ~lying
        if exact:
            slow[:] = True
        if slow.any():
            ts = t[slow]
            r_m, p_m, _ = self.sensor_state(ts - h)
            r_0, p_0, _ = self.sensor_state(ts)
            r_p, p_p, _ = self.sensor_state(ts + h)
            f = (p_p - 2 * p_0 + p_m) / (h * h)
            if gait[slow].any():
                f += self.walk_acceleration(ts, gait[slow], (ch["gait"][after] - ch["gait"][before])[slow]
                                            / (2 * h), (np.radians(ch["yaw"][after] - ch["yaw"][before])
                                                        / (2 * h))[slow], ch["yaw"][mid][slow])
            f = f / G_MPS2
            f[:, 2] += 1.0
            acc[slow] = np.einsum("nji,nj->ni", r_0, f)
            if omega is not None:
                omega[slow] = np.degrees(vee_rate(r_m, r_0, r_p, h))
        return acc, omega

    def _handled(self, t: np.ndarray, desk: np.ndarray, r_worn: np.ndarray,
                 pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Orientation and position of a sensor being taken off, lying on the desk or put on."""
        ep = self.episode_index(t)
        r_desk = self.desk_rot[ep]
        s = desk  # already a smooth 0..1 ramp
        worn = Rotation.from_matrix(r_worn)
        rel = (worn.inv() * Rotation.from_matrix(r_desk)).as_rotvec()
        rot = worn * Rotation.from_rotvec(rel * s[:, None])
        # Fumbling hands: a wobble that vanishes on the back and on the desk.
        fumble = np.sin(np.pi * s)[:, None] * 0.3 * np.sin(
            2 * np.pi * np.outer(t, [1.3, 1.7, 0.9]) + self.sway[10:13])
        rot = rot * Rotation.from_rotvec(fumble)
        desk_pos = np.array([0.45, 0.25, 0.3])
        pos = pos * (1 - s)[:, None] + desk_pos * s[:, None]
        return rot.as_matrix(), pos

    def walk_acceleration(self, t: np.ndarray, gait: np.ndarray, gait_rate: np.ndarray,
                          yaw_rate_rad: np.ndarray, yaw_deg: np.ndarray) -> np.ndarray:
        """World acceleration in m/s^2 from walking progress: speeding up, slowing down, turning."""
        if not gait.any():
            return np.zeros((len(t), 3))
        v = self._gait_params(t)[2]
        yaw = np.radians(yaw_deg)
        heading = np.stack([np.cos(yaw), np.sin(yaw), np.zeros_like(yaw)], -1)
        left = np.stack([-np.sin(yaw), np.cos(yaw), np.zeros_like(yaw)], -1)
        return heading * (v * gait_rate)[:, None] + left * (v * gait * yaw_rate_rad)[:, None]

    def truth(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        flex, lat, _, ch = self.body_angles(t)
        worn = (ch["desk"] == 0)
        flex = np.where(worn, flex, np.nan)
        lat = np.where(worn, lat, np.nan)
        return flex, lat, self.ep_kind[self.episode_index(t)]

