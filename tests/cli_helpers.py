"""Run the ``slouchd`` command line as a user does: a child process with its output captured."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, timeout_s: float = 60.0, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``slouchd ARGS...`` (``python -m slouchd.cli``) run to its end within ``timeout_s`` seconds;
    stdout and stderr as text."""
    return subprocess.run([sys.executable, "-m", "slouchd.cli", *args], capture_output=True, text=True,
                          timeout=timeout_s, cwd=cwd)
