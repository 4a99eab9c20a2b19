"""Which value wins: the config file or a change made from Home Assistant / MQTT.

One rule, the same at start-up (``systemctl restart``) and on reload (SIGHUP):

    A key that the config file has changed since the last Home Assistant change wins;
    otherwise the Home Assistant value stays.

To tell the two apart, every value set from Home Assistant is saved with the file's value *at the
moment it was set*. When the file's value later differs from that remembered one, somebody edited
the file after the Home Assistant change, and the file wins. A state file written before this rule
existed has no remembered file values: its Home Assistant values stay, and the file's current
values are remembered from then on.

Pure: no I/O. The daemon persists :meth:`SettingOverrides.to_dict` with the wearer's state.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


def _same(a: Any, b: Any) -> bool:
    """Equal values (floats compared with a tolerance: JSON round trips are exact, but be safe)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(float(a), float(b), rel_tol=0.0, abs_tol=1e-9)
    return bool(a == b)


@dataclass
class Decision:
    """What :meth:`SettingOverrides.reconcile` decided for one key, in words for the log."""

    key: str
    kept: bool
    ha_value: Any
    file_value: Any
    file_value_then: Any | None

    def describe(self) -> str:
        if self.kept:
            why = ("the config file has not changed it since" if self.file_value_then is not None
                   else "set before slouchd remembered the file's value")
            return (f"{self.key} = {self.ha_value!r} from Home Assistant ({why}; the file says "
                    f"{self.file_value!r})")
        return (f"{self.key} = {self.file_value!r} from the config file (changed from "
                f"{self.file_value_then!r} after Home Assistant set {self.ha_value!r})")


@dataclass
class SettingOverrides:
    """Settings changed from Home Assistant / MQTT for one wearer, with the file's value then.

    Attributes:
        values: key -> the value set from Home Assistant.
        file_then: key -> the config file's value when that Home Assistant change was made.
    """

    values: dict[str, Any] = field(default_factory=dict)
    file_then: dict[str, Any] = field(default_factory=dict)

    # ----- persistence ------------------------------------------------------------------------
    @classmethod
    def from_saved(cls, saved: Mapping[str, Any]) -> SettingOverrides:
        """From a wearer's saved state: ``overrides`` (values) and ``overrides_file`` (file then)."""
        values = saved.get("overrides") or {}
        then = saved.get("overrides_file") or {}
        if not isinstance(values, Mapping):
            values = {}
        if not isinstance(then, Mapping):
            then = {}
        return cls(dict(values), {k: v for k, v in then.items() if k in values})

    def to_dict(self) -> dict[str, Any]:
        """The two tables for the state file (``overrides`` and ``overrides_file``)."""
        return {"overrides": dict(self.values), "overrides_file": dict(self.file_then)}

    # ----- changes ------------------------------------------------------------------------------
    def set(self, changes: Mapping[str, Any], file_values: Mapping[str, Any]) -> SettingOverrides:
        """A new set with ``changes`` made from Home Assistant now; ``file_values`` are the
        config file's values of the same keys at this moment."""
        values = {**self.values, **changes}
        then = {**self.file_then, **{k: file_values[k] for k in changes}}
        return SettingOverrides(values, then)

    def only(self, keys: Iterable[str]) -> SettingOverrides:
        """The overrides restricted to ``keys`` (the rest dropped)."""
        keep = set(keys)
        return SettingOverrides({k: v for k, v in self.values.items() if k in keep},
                                {k: v for k, v in self.file_then.items() if k in keep})

    def reconcile(self, file_values: Mapping[str, Any]) -> tuple[SettingOverrides, list[Decision]]:
        """Apply the rule against the config file's current values.

        Returns the overrides that stay (with a remembered file value for every key) and one
        :class:`Decision` per key that was set from Home Assistant.
        """
        kept = SettingOverrides()
        decisions: list[Decision] = []
        for key, ha_value in self.values.items():
            if key not in file_values:
                continue
            now = file_values[key]
            then = self.file_then.get(key)
            changed = key in self.file_then and not _same(then, now)
            decisions.append(Decision(key, not changed, ha_value, now, then))
            if not changed:
                kept.values[key] = ha_value
                kept.file_then[key] = now if then is None else then
        return kept, decisions
