"""Signals that stop a run cleanly: a checkpoint if training, then the record, then the previous handler or an exit.

SLURM (``scancel``, the time limit, preemption), torchrun and Ctrl-C stop a run with a signal.
:class:`StopOnSignals` handles a configurable set of them (``run.stop_signals``; SIGTERM and SIGINT
by default) for as long as its ``with`` block runs, then restores the handlers that were there:

- inside :meth:`StopOnSignals.training` a signal asks the Trainer's
  :class:`~repcali.checkpoints.Checkpointer` to save a checkpoint and stop at the next step boundary
  (``save_at_next_step(stop=True)``); leaving the block then raises :class:`Interrupted`. A second
  signal before that, ``REPEAT_S`` or more after the first, raises at once (a step that never ends
  can still be left; the same signal delivered twice at once, by a terminal to its process group
  and by a parent forwarding it, is one);
- anywhere else in the block, a signal raises :class:`Interrupted` at once, as Ctrl-C raises
  ``KeyboardInterrupt``;
- after :meth:`StopOnSignals.defer` (the record is being written) a signal is only noted:
  :meth:`StopOnSignals.interrupted` returns it afterwards. Interrupted is raised at most once.

The caller records ``interrupted`` and then calls :meth:`Interrupted.hand_on`, outside the block
(deferred chaining): where a handler was installed before ours (a Python callable, such as
submitit's; not ``SIG_DFL``, ``SIG_IGN`` or Python's own ``KeyboardInterrupt`` handler), it is
called now, with the record on disk; then, or if there is none, the process exits with 128 + the
signal's number (130 for SIGINT, 143 for SIGTERM), so a sweep never goes on to its next run.

    stop = StopOnSignals(["SIGTERM", "SIGINT", "SIGUSR2"])
    with stop:
        try:
            prepare()                                  # a signal here raises Interrupted
            with stop.training(checkpointer):          # here: checkpoint and stop at the next step, then raise
                trainer.train()
            evaluate()
            stop.defer()
            record_completed()                         # signals from here on are noted only
        except Interrupted:
            stop.defer()
            record_interrupted()
    if interrupted := stop.interrupted():              # raised or only noted
        interrupted.hand_on()                          # e.g. submitit's checkpoint_and_try_requeue, or exit(128+n)

``train.py`` does this through :func:`repcali.experiment.run_experiment`, which takes the set from
``run.stop_signals``. Under submitit, whose handlers are installed before the job runs (SIGUSR2:
checkpoint and requeue; SIGTERM: logged and ignored), adding ``SIGUSR2`` to the set makes the
preemption signal checkpoint the run and record it before submitit's handler requeues the job.
A previous handler that returns (submitit's SIGTERM bypass) is followed by the exit all the same.
Python runs handlers in the main thread only; from another thread nothing is installed and
signals keep their previous behaviour.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Iterable
from contextlib import contextmanager
from typing import Any, NoReturn

from repcali.errors import RepCaliError

log = logging.getLogger("repcali")

DEFAULT_SIGNALS = ("SIGTERM", "SIGINT", "SIGUSR2")
REPEAT_S = 1.0  # signals this soon after the first are one stop (a terminal's process group and a parent both send)
_UNCATCHABLE = {"SIGKILL", "SIGSTOP"}


def signals_named(names: Iterable[str]) -> tuple[signal.Signals, ...]:
    """``["SIGTERM", "SIGUSR2"]`` as signals; a name that is none, or one that cannot be caught, is refused."""
    found = []
    for name in names:
        key = str(name).upper()
        key = key if key.startswith("SIG") else f"SIG{key}"
        if key in _UNCATCHABLE or key not in signal.Signals.__members__:
            catchable = ", ".join(s.name for s in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2))
            raise RepCaliError(
                f"run.stop_signals: {name!r} is not a signal a process can catch. Fix: use names such as {catchable}."
            )
        found.append(signal.Signals[key])
    return tuple(dict.fromkeys(found))


class Interrupted(BaseException):
    """A run stopped by a signal. A ``BaseException``, like ``KeyboardInterrupt``: library code that
    catches ``Exception`` does not swallow it."""

    def __init__(self, signum: int, previous: Any = None) -> None:
        super().__init__(signum)
        self.signum = signal.Signals(signum)
        self.previous = previous  # the handler installed before ours

    def __str__(self) -> str:
        return f"stopped by {self.signum.name}"

    @property
    def exit_code(self) -> int:
        return 128 + int(self.signum)

    def hand_on(self) -> NoReturn:
        """Call the handler that was there before ours (if a Python callable), then exit with 128 + n."""
        previous = self.previous
        if callable(previous) and previous is not signal.default_int_handler:
            previous(int(self.signum), None)
        sys.exit(self.exit_code)


class StopOnSignals:
    """Handle ``signals`` as described in the module docstring while the ``with`` block runs."""

    def __init__(self, signals: Iterable[str | int] = DEFAULT_SIGNALS) -> None:
        named = [s for s in signals if not isinstance(s, int)]
        self.signals = (*signals_named(named), *(signal.Signals(s) for s in signals if isinstance(s, int)))
        self.received: signal.Signals | None = None
        self._first_at = 0.0
        self._previous: dict[signal.Signals, Any] = {}
        self._checkpointer = None
        self._deferred = False
        self._raised = False

    def __enter__(self) -> StopOnSignals:
        if threading.current_thread() is not threading.main_thread():
            log.debug("Not in the main thread: signals keep their handlers.")
            return self
        for signum in self.signals:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, signal.SIG_DFL if previous is None else previous)  # None: set outside Python

    def _handle(self, signum: int, frame) -> None:
        first = self.received is None
        if first:
            self.received, self._first_at = signal.Signals(signum), time.monotonic()
        elif time.monotonic() - self._first_at < REPEAT_S:
            return  # the same stop delivered twice (to the process group and forwarded by a parent)
        name = signal.Signals(signum).name
        if self._deferred or self._raised:
            log.warning("%s: the run is stopping already; its record is being written.", name)
            return
        if self._checkpointer is not None and first:
            log.warning("%s: saving a checkpoint at the end of this step, then stopping (again: at once).", name)
            self._checkpointer.save_at_next_step(stop=True)
            return
        self._raised = True
        raise Interrupted(signum, self._previous.get(signal.Signals(signum)))

    @contextmanager
    def training(self, checkpointer):
        """While training: a signal asks ``checkpointer`` (None: no checkpoints) to save and stop at the
        next step; leaving the block then raises :class:`Interrupted`."""
        self._checkpointer = checkpointer
        try:
            yield
        finally:
            self._checkpointer = None
        if self.received is not None and not self._raised:
            self._raised = True
            raise self.interrupted()

    def defer(self) -> None:
        """From now on a signal is only noted (the run's record is being written): see :meth:`interrupted`."""
        self._deferred = True

    def interrupted(self) -> Interrupted | None:
        """The first signal received (raised or only noted) as an :class:`Interrupted` to hand on; None if none."""
        if self.received is None:
            return None
        return Interrupted(self.received, self._previous.get(self.received))
