"""The project's commands as a user runs them: a fresh process in the project root, output captured;
and the same commands in this process (:func:`here`), seconds faster per command."""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
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


def here(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """:func:`run` without a new process, seconds faster: ``train.py``'s entry point (its command-line checks,
    Hydra's app and logging, what it prints, its exit code) or ``-m <module>``'s ``main``, on ``sys.argv``,
    in the project root, with ``env`` as the whole environment, stdout and stderr captured.

    What needs a process of its own stays in one (:func:`run`): signals, kills, locks between processes,
    torchrun, launchers that start processes.
    """
    from hydra.core.global_hydra import GlobalHydra

    if args[0] == "train.py":
        import train

        entry, argv = train.cli, list(args)
    else:
        assert args[0] == "-m", args
        module = importlib.import_module(args[1])
        if hasattr(module, "__path__"):  # a package: python -m runs its __main__
            module = importlib.import_module(f"{args[1]}.__main__")
        entry, argv = module.main, [module.__file__, *args[2:]]
    environment = {**os.environ, "HYDRA_FULL_ERROR": "0"} if env is None else dict(env)
    environment["HYDRA_MAIN_MODULE"] = "__main__"  # Hydra finds conf/ beside train.py, as for `python train.py`
    saved_environment, saved_argv, saved_cwd = dict(os.environ), sys.argv, os.getcwd()
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    # Hydra configures logging as a fresh process would, and logging.config first closes every handler it
    # knows: not this process's (absl's would close pytest's captured stderr), which a fresh process lacks.
    known_handlers = logging._handlerList[:]
    logging._handlerList[:] = []
    saved_hydra = GlobalHydra.instance().hydra  # a compose fixture's, given back after
    GlobalHydra.instance().clear()
    stdout, stderr = io.StringIO(), io.StringIO()
    code: int | str | None = 0
    try:
        os.environ.clear()
        os.environ.update(environment)
        sys.argv = argv
        os.chdir(ROOT)
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                entry()
            except SystemExit as exit_:
                code = exit_.code
                if isinstance(code, str):  # as the interpreter reports sys.exit("message")
                    print(code, file=sys.stderr)
    finally:
        os.chdir(saved_cwd)
        sys.argv = saved_argv
        os.environ.clear()
        os.environ.update(saved_environment)
        for handler in root.handlers:  # Hydra's job logging: train.log in the run directory, the console
            if handler not in saved_handlers:
                handler.close()
        root.handlers[:] = saved_handlers
        logging._handlerList[:] = known_handlers + logging._handlerList
        root.setLevel(saved_level)
        GlobalHydra.instance().clear()
        GlobalHydra.instance().hydra = saved_hydra
    returncode = 1 if isinstance(code, str) else code or 0
    return subprocess.CompletedProcess(list(args), returncode, stdout.getvalue(), stderr.getvalue())
