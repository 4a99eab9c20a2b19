"""The stretch catalogue: which stretches exist and which sessions string them together.

Pure data and validation (no I/O): :func:`parse_catalog` turns the TOML document of
``config/stretches.toml`` into :class:`StretchCatalog`; ``slouchd.stretches`` reads the file. Every
problem is one line naming the file, the key and what is allowed, as for the main config::

    config/stretches.toml: stretches[2].direction = "sideways": must be one of "extension", ...

Angles are relative to the wearer's calibrated upright, in degrees, measured in the stretch's
direction: 15 for an ``extension`` means 15 degrees *backward*, for ``side_left`` 15 degrees
toward the wearer's left.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from slouchd.schema import SettingsError, build, setting

DIRECTIONS = ("extension", "flexion", "side_left", "side_right", "squeeze")
"""Where a stretch takes the upper back: backward, forward, sideways, or (``squeeze``) nowhere:
a shoulder-blade squeeze is judged as holding still near upright, which is all one sensor on the
upper back can tell about it."""

NAME_PATTERN = r"[a-z][a-z0-9_]{0,39}"

SAFETY_TEXT = ("Stretch to mild tightness, never pain: stop if it hurts, and see a clinician "
               "for sharp or lasting pain.")
"""Appended to every instruction a wearer is shown: a reminder, never a diagnosis."""


@dataclass(frozen=True)
class Stretch:
    """One stretch: the pose, how long to hold it, how often, and what to tell the wearer."""

    name: str = setting(doc="identifier used by sessions, lower case, e.g. thoracic_extension",
                        pattern=NAME_PATTERN)
    instruction: str = setting(doc="one line telling the wearer what to do (a reminder, not advice)",
                               pattern=r"[^\n]{10,200}")
    direction: str = setting(choices=DIRECTIONS, doc="where the stretch takes the upper back")
    title: str = setting("", doc="name shown to the wearer (default: the name)", pattern=r"[^\n]{0,60}")
    min_deg: float = setting(
        10.0, min=0, max=60,
        doc="the pose is reached from this angle in the stretch's direction (0 for squeeze), degrees")
    max_deg: float = setting(
        35.0, min=2, max=90,
        doc="beyond this the wearer is told to ease off; for squeeze, the largest lean from upright "
            "in any direction that still counts, degrees")
    other_max_deg: float = setting(
        20.0, min=2, max=60,
        doc="the largest lean on the other axis (forward/back for side bends, sideways otherwise) "
            "that still counts as this stretch, degrees")
    hold_s: float = setting(15.0, min=3, max=120, doc="how long each repetition is held still, seconds")
    repetitions: int = setting(2, min=1, max=10, doc="how many holds")
    rest_s: float = setting(8.0, min=0, max=120, doc="rest after each hold, seconds")

    def validate(self) -> None:
        if self.direction == "squeeze":
            if self.min_deg != 0:
                raise SettingsError(f"min_deg = {self.min_deg:g}: must be 0 for a squeeze "
                                    "(it has no angle to reach: it is held near upright)")
        elif self.max_deg < self.min_deg + 5:
            raise SettingsError(f"max_deg = {self.max_deg:g}: must be at least min_deg + 5 "
                                f"({self.min_deg + 5:g}): the pose needs room to be held")
        elif self.min_deg < 5:
            raise SettingsError(f"min_deg = {self.min_deg:g}: must be at least 5 for a {self.direction} "
                                "(closer to upright cannot be told from sitting)")

    @property
    def shown_title(self) -> str:
        return self.title or self.name.replace("_", " ")


@dataclass(frozen=True)
class StretchSession:
    """A named sequence of stretches, done in order."""

    name: str = setting(doc="identifier, e.g. desk_break (slouchd stretch --session NAME)",
                        pattern=NAME_PATTERN)
    steps: list[str] = setting(doc="the stretches by name, in order", pattern=NAME_PATTERN)
    title: str = setting("", doc="name shown to the wearer", pattern=r"[^\n]{0,60}")

    def validate(self) -> None:
        if not self.steps:
            raise SettingsError("steps = []: a session needs at least one stretch")


@dataclass(frozen=True)
class StretchCatalog:
    """The whole ``stretches.toml``: the stretches and the sessions."""

    stretches: list[Stretch] = setting(factory=list, doc="the stretches ([[stretches]] tables)")
    sessions: list[StretchSession] = setting(factory=list, doc="the sessions ([[sessions]] tables)")

    def validate(self) -> None:
        if not self.stretches:
            raise SettingsError("stretches: the catalogue needs at least one [[stretches]] table")
        if not self.sessions:
            raise SettingsError("sessions: the catalogue needs at least one [[sessions]] table")
        _unique("stretches", [s.name for s in self.stretches])
        _unique("sessions", [s.name for s in self.sessions])
        known = {s.name for s in self.stretches}
        for i, session in enumerate(self.sessions):
            for j, step in enumerate(session.steps):
                if step not in known:
                    raise SettingsError(f'sessions[{i}].steps[{j}] = "{step}": no such stretch '
                                        f"(known: {', '.join(sorted(known))})")

    def stretch(self, name: str) -> Stretch:
        for s in self.stretches:
            if s.name == name:
                return s
        raise KeyError(name)

    def session(self, name: str | None = None) -> StretchSession:
        """The session called ``name`` (the first one when None). Raises KeyError."""
        if name is None:
            return self.sessions[0]
        for s in self.sessions:
            if s.name == name:
                return s
        raise KeyError(name)

    def steps_of(self, session: StretchSession) -> list[Stretch]:
        return [self.stretch(n) for n in session.steps]


def _unique(key: str, names: list[str]) -> None:
    seen: set[str] = set()
    for i, n in enumerate(names):
        if n in seen:
            raise SettingsError(f'{key}[{i}].name = "{n}": used twice')
        seen.add(n)


def parse_catalog(data: Mapping[str, Any], source: str) -> StretchCatalog:
    """The catalogue from a parsed TOML document.

    Raises:
        SettingsError: one line naming ``source``, the key, the value and what is allowed.
    """
    return build(StretchCatalog, data, source)
