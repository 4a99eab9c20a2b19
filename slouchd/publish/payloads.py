"""JSON payloads: the daemon's dicts (numpy scalars, NaN, datetimes) made safe for MQTT."""

from __future__ import annotations

import json
import math
from typing import Any


def _jsonable(obj: Any) -> Any:
    """Make the daemon's dicts safe for JSON: numpy scalars to Python, NaN/inf to null."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, bool | int | str) or obj is None:
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    item = getattr(obj, "item", None)  # numpy scalar
    if callable(item):
        return _jsonable(item())
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    return str(obj)


def to_json(obj: Any) -> bytes:
    """Compact UTF-8 JSON of ``obj`` (see :func:`_jsonable` for what is converted)."""
    return json.dumps(_jsonable(obj), separators=(",", ":"), allow_nan=False).encode()
