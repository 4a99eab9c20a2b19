"""Reading the stretch catalogue file (``config/stretches.toml``); the rules are in
:mod:`slouchd.posture.stretch_catalog`.

With no path given, the built-in catalogue is used: ``config/stretches.toml`` at the top of the
source tree, or ``<prefix>/share/slouchd/stretches.toml`` for an installed (non-editable) package.
"""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path

from slouchd.files import unreadable
from slouchd.posture.stretch_catalog import StretchCatalog, parse_catalog
from slouchd.schema import SettingsError

BUILTIN_CANDIDATES = (Path(__file__).resolve().parents[1] / "config" / "stretches.toml",
                      Path(sys.prefix) / "share" / "slouchd" / "stretches.toml")


def builtin_catalog_path() -> Path:
    """Where the built-in catalogue is. Raises SettingsError when no candidate exists."""
    for p in BUILTIN_CANDIDATES:
        if p.is_file():
            return p
    raise SettingsError("built-in stretch catalogue not found (looked in "
                        + ", ".join(str(p) for p in BUILTIN_CANDIDATES) + ")")


def load_catalog(path: str | os.PathLike[str] | None = None) -> StretchCatalog:
    """Read and validate a catalogue (the built-in one when ``path`` is None).

    Raises:
        SettingsError: one line naming the file and, for a bad value, the key and what is allowed.
    """
    p = builtin_catalog_path() if path is None else Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise SettingsError(unreadable(p, err)) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SettingsError(f"{p}: not valid TOML: {err}") from None
    return parse_catalog(data, str(p))
