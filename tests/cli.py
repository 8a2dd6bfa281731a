"""The project's commands as a user runs them: a fresh process in the project root, output captured."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.grid import ROOT


def run(*args: str, timeout: float = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python <args>`` (or ``torchrun <args>`` when the first is ``torchrun``); Hydra errors in one line."""
    program = str(Path(sys.executable).with_name("torchrun")) if args[0] == "torchrun" else sys.executable
    command = [program, *args[args[0] == "torchrun" :]]
    environment = {**os.environ, "HYDRA_FULL_ERROR": "0"} if env is None else env
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=environment)
