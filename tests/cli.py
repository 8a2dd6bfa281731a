"""The project's commands as a user runs them: a fresh process in the project root, output captured;
the same commands in this process (:func:`here`), seconds faster per command; and in a process of its
own forked from this one (:func:`start`), for what needs one, without paying the imports again."""

from __future__ import annotations

import atexit
import contextlib
import importlib
import io
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import weakref
from collections.abc import Callable
from pathlib import Path

from tests.grid import ROOT


def run(*args: str, timeout: float = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python <args>`` (or ``torchrun <args>`` when the first is ``torchrun``); Hydra errors in one line."""
    program = str(Path(sys.executable).with_name("torchrun")) if args[0] == "torchrun" else sys.executable
    command = [program, *args[args[0] == "torchrun" :]]
    environment = {**os.environ, "HYDRA_FULL_ERROR": "0"} if env is None else env
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=environment)


def _entry_point(args: tuple[str, ...]) -> tuple[Callable[[], None], list[str]]:
    """What ``python <args>`` calls, and its ``sys.argv``: ``train.py``'s entry point or ``-m <module>``'s main."""
    if args[0] == "train.py":
        import train

        return train.cli, list(args)
    assert args[0] == "-m", args
    module = importlib.import_module(args[1])
    if hasattr(module, "__path__"):  # a package: python -m runs its __main__
        module = importlib.import_module(f"{args[1]}.__main__")
    return module.main, [module.__file__, *args[2:]]


def _environment(env: dict[str, str] | None) -> dict[str, str]:
    environment = {**os.environ, "HYDRA_FULL_ERROR": "0"} if env is None else dict(env)
    environment["HYDRA_MAIN_MODULE"] = "__main__"  # Hydra finds conf/ beside train.py, as for `python train.py`
    return environment


def _call(entry: Callable[[], None]) -> int:
    """``entry()``'s exit code as the interpreter gives it: ``sys.exit("message")`` prints it and is 1."""
    try:
        entry()
    except SystemExit as exit_:
        if isinstance(exit_.code, str):
            print(exit_.code, file=sys.stderr)
            return 1
        return exit_.code or 0
    return 0


def _fresh_logging_and_hydra() -> None:
    """Hydra configures logging as a fresh process would, and logging.config first closes every handler it
    knows: not this process's (absl's would close pytest's captured stderr), which a fresh process lacks."""
    from hydra.core.global_hydra import GlobalHydra

    logging._handlerList[:] = []
    GlobalHydra.instance().clear()


def here(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """:func:`run` without a new process, seconds faster: ``train.py``'s entry point (its command-line checks,
    Hydra's app and logging, what it prints, its exit code) or ``-m <module>``'s ``main``, on ``sys.argv``,
    in the project root, with ``env`` as the whole environment, stdout and stderr captured.

    What needs a process of its own stays in one (:func:`start`, :func:`run`): signals, kills, locks between
    processes, torchrun, launchers that start processes.
    """
    from hydra.core.global_hydra import GlobalHydra

    entry, argv = _entry_point(args)
    saved_environment, saved_argv, saved_cwd = dict(os.environ), sys.argv, os.getcwd()
    root = logging.getLogger()
    saved_handlers, saved_level, known_handlers = root.handlers[:], root.level, logging._handlerList[:]
    saved_hydra = GlobalHydra.instance().hydra  # a compose fixture's, given back after
    stdout, stderr = io.StringIO(), io.StringIO()
    environment = _environment(env)  # before the clear: with env=None, this process's environment
    try:
        _fresh_logging_and_hydra()
        os.environ.clear()
        os.environ.update(environment)
        sys.argv = argv
        os.chdir(ROOT)
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = _call(entry)
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
    return subprocess.CompletedProcess(list(args), code, stdout.getvalue(), stderr.getvalue())


class Started:
    """A process started by :func:`start`: what the tests use of :class:`subprocess.Popen` (``pid``,
    ``poll``, ``wait``, ``send_signal``, ``kill``, ``returncode``: ``-n`` when killed by signal n), and its
    output once it has ended (``stdout``, ``stderr``; while it runs, the files ``stdout_path``, ``stderr_path``)."""

    def __init__(self, pid: int, stdout_path: Path, stderr_path: Path) -> None:
        self.pid, self.stdout_path, self.stderr_path = pid, stdout_path, stderr_path
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout)
            time.sleep(0.02)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text()

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()


def start(
    *args: str, env: dict[str, str] | None = None, output: Path | None = None, before: Callable[[], None] | None = None
) -> Started:
    """``python <args>`` (``train.py ...`` or ``-m <module> ...``) in a process of its own, forked from this
    one: a real process (its own pid; real signals, kills and locks; a kill loses what it had not written)
    whose imports this process already paid (~12 s of CPU per ``train.py`` process). It starts as a fresh
    interpreter would: default signal handlers, the project root, ``env`` as the environment, no Hydra
    state; ``before()`` runs first in it (e.g. to mount a file system). stdout and stderr go to files
    in ``output`` (a new temporary folder by default). Not for what must start from a fresh interpreter
    (hash seeds, import-time state): that is :func:`run`'s job."""
    folder = Path(output or tempfile.mkdtemp(prefix="started-"))
    folder.mkdir(parents=True, exist_ok=True)
    stdout_path, stderr_path = folder / "stdout.txt", folder / "stderr.txt"
    entry, argv = _entry_point(args)
    environment = _environment(env)
    files = [os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC) for path in (stdout_path, stderr_path)]
    sys.stdout.flush()  # nothing buffered here is written twice by the child
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        for fd in files:
            os.close(fd)
        started = Started(pid, stdout_path, stderr_path)
        if output is None:
            weakref.finalize(started, shutil.rmtree, folder, ignore_errors=True)
        return started
    code = 1
    try:  # the child: never returns into pytest, and runs at exit only the exit hooks it registers itself
        atexit._clear()
        threading._threading_atexits.clear()
        weakref.finalize._registry.clear()  # this process's clean-ups (its temporary folders) are not the child's
        weakref.finalize._registered_with_atexit = False
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.dup2(files[0], 1)
        os.dup2(files[1], 2)
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), line_buffering=True)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), write_through=True)
        sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
        for signum in (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP, signal.SIGALRM):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        logging.getLogger().handlers[:] = []
        _fresh_logging_and_hydra()
        os.environ.clear()
        os.environ.update(environment)
        sys.argv = argv
        os.chdir(ROOT)
        if before is not None:
            before()
        code = _call(entry)
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):  # what the interpreter does at exit (loky stops its workers)
            threading._shutdown()  # joins the threads it started, runs threading's exit hooks
            atexit._run_exitfuncs()
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)
