"""Frames, rotations and mounts of the simulated wearer (angles in radians unless named _deg).

World: ``x`` = the direction the wearer faces, ``y`` = the wearer's left, ``z`` = up.
Body coordinates use the same axes for an upright trunk; the body's named axes are ``up`` (+z),
``out`` of the back (-x) and ``right`` (-y). The trunk's orientation is
``Rz(yaw) @ Rx(lateral) @ Ry(flexion)``.
"""

from __future__ import annotations

import math

import numpy as np

from slouchd.model import Mount

G_MPS2 = 9.80665
"""Standard gravity, m/s^2: positions are in metres, accelerations are reported in g."""


def rx(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    z, o = np.zeros_like(a), np.ones_like(a)
    return np.stack([np.stack([o, z, z], -1), np.stack([z, c, -s], -1), np.stack([z, s, c], -1)], -2)


def ry(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    z, o = np.zeros_like(a), np.ones_like(a)
    return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1), np.stack([-s, z, c], -1)], -2)


def rz(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    z, o = np.zeros_like(a), np.ones_like(a)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], -2)


def r_wb(yaw: np.ndarray, lat: np.ndarray, flex: np.ndarray) -> np.ndarray:
    """``Rz(yaw) @ Rx(lat) @ Ry(flex)`` for arrays of angles in radians, shape (n, 3, 3)."""
    cz, sz, cx, sx, cy, sy = np.cos(yaw), np.sin(yaw), np.cos(lat), np.sin(lat), np.cos(flex), np.sin(flex)
    r = np.empty((len(yaw), 3, 3))
    # Rx @ Ry, row by row, then Rz mixes the first two rows.
    a0, a1, a2 = cy, np.zeros_like(cy), sy
    b0, b1, b2 = sx * sy, cx, -sx * cy
    r[:, 0, 0], r[:, 0, 1], r[:, 0, 2] = cz * a0 - sz * b0, cz * a1 - sz * b1, cz * a2 - sz * b2
    r[:, 1, 0], r[:, 1, 1], r[:, 1, 2] = sz * a0 + cz * b0, sz * a1 + cz * b1, sz * a2 + cz * b2
    r[:, 2, 0], r[:, 2, 1], r[:, 2, 2] = -cx * sy, sx, cx * cy
    return r


def trunk_up(yaw: np.ndarray, lat: np.ndarray, flex: np.ndarray) -> np.ndarray:
    """World direction of the trunk's ``up`` axis (third column of ``_r_wb``), shape (n, 3)."""
    cz, sz, cx, sx, cy, sy = np.cos(yaw), np.sin(yaw), np.cos(lat), np.sin(lat), np.cos(flex), np.sin(flex)
    return np.stack([cz * sy + sz * sx * cy, sz * sy - cz * sx * cy, cx * cy], -1)


BODY_UP = np.array([0.0, 0.0, 1.0])
"""Body ``up`` in body coordinates (x anterior, y left, z up)."""
BODY_OUT = np.array([-1.0, 0.0, 0.0])
"""Body ``out`` (posterior) in body coordinates."""
BODY_RIGHT = np.array([0.0, -1.0, 0.0])
"""Body ``right`` in body coordinates."""


def mount_matrix(mount: Mount) -> np.ndarray:
    """Rotation taking sensor coordinates to body coordinates for a perfectly placed sensor."""
    m = np.zeros((3, 3))
    iu, io = "xyz".index(mount.up[1]), "xyz".index(mount.out[1])
    m[:, iu] = BODY_UP * (1.0 if mount.up[0] == "+" else -1.0)
    m[:, io] = BODY_OUT * (1.0 if mount.out[0] == "+" else -1.0)
    k = 3 - iu - io
    m[:, k] = np.cross(m[:, (k + 1) % 3], m[:, (k + 2) % 3])
    return m


def stick_on_matrix(mount: Mount, inclination_deg: float, twist_deg: float) -> np.ndarray:
    """Sensor-to-body rotation of a real stick-on: the mount, tilted like a forward bend by the
    inclination (kyphosis) and twisted about the out axis."""
    tilt = ry(np.array(math.radians(inclination_deg)))
    # out = -x, so a twist of +a about out is a rotation of -a about x.
    twist = rx(np.array(-math.radians(twist_deg)))
    return tilt @ twist @ mount_matrix(mount)


def flexion_lateral_from_gravity(acc_body: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flexion and lateral lean in degrees from gravity's reaction in (up, out, right) components.

    Args:
        acc_body: (n, 3) specific force in g ordered (up, out, right).
    """
    up, out, right = acc_body[:, 0], acc_body[:, 1], acc_body[:, 2]
    norm = np.linalg.norm(acc_body, axis=1)
    return np.degrees(np.arctan2(out, up)), np.degrees(np.arcsin(np.clip(-right / norm, -1, 1)))



def vee_rate(r_minus: np.ndarray, r_mid: np.ndarray, r_plus: np.ndarray, h: float) -> np.ndarray:
    """Angular velocity in the moving frame (rad/s) from rotations at t-h, t, t+h."""
    rdot = (r_plus - r_minus) / (2 * h)
    a = np.swapaxes(r_mid, 1, 2) @ rdot  # R^T dR/dt = [omega]x
    return 0.5 * np.stack([a[:, 2, 1] - a[:, 1, 2], a[:, 0, 2] - a[:, 2, 0], a[:, 1, 0] - a[:, 0, 1]], -1)

