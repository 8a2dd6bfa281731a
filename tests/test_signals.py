"""The stop-signal mechanism itself, with real signals sent to this process (``os.kill``): what each mode
does, that the previous handler is called only after the run's record (deferred chaining), and restored.

End to end (``train.py`` stopped by SIGTERM and SIGINT in a subprocess): tests/test_checkpoints.py.
"""

from __future__ import annotations

import os
import signal

import pytest

from repcali import signals
from repcali.errors import RepCaliError
from repcali.signals import Interrupted, StopOnSignals, signals_named

SIG = signal.SIGUSR1  # not SIGINT/SIGTERM: pytest and its workers keep their own


class Previous:
    """A handler installed before ours, as submitit installs its own."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, signum, frame) -> None:
        self.calls.append(signum)


class Requests:
    """What a :class:`~repcali.checkpoints.Checkpointer` is asked (its reaction: tests/test_checkpoints.py)."""

    def __init__(self) -> None:
        self.stops: list[bool] = []

    def save_at_next_step(self, stop: bool = False) -> None:
        self.stops.append(stop)


@pytest.fixture
def previous():
    handler = Previous()
    original = signal.signal(SIG, handler)
    yield handler
    signal.signal(SIG, original)


def test_outside_training_a_signal_stops_at_once_and_the_previous_handler_runs_after_the_record(previous):
    stop, reached = StopOnSignals(["SIGUSR1"]), []
    with stop, pytest.raises(Interrupted) as caught:
        os.kill(os.getpid(), SIG)
        reached.append(True)  # never: the handler raises in the main thread
    assert reached == [] and caught.value.signum == SIG and str(caught.value) == "stopped by SIGUSR1"
    assert previous.calls == [] and signal.getsignal(SIG) is previous  # not called yet; restored
    with pytest.raises(SystemExit) as exited:
        stop.interrupted().hand_on()  # once the record is written
    assert previous.calls == [SIG] and exited.value.code == 128 + SIG


def test_while_training_a_signal_asks_for_a_checkpoint_then_raises_when_training_ends(previous, monkeypatch):
    requests = Requests()
    stop = StopOnSignals(["SIGUSR1"])
    with stop, pytest.raises(Interrupted), stop.training(requests):
        os.kill(os.getpid(), SIG)
        os.kill(os.getpid(), SIG)  # the same stop delivered twice (process group, parent): one request
        assert requests.stops == [True]  # still training: the checkpoint comes at the next step
    assert previous.calls == []

    monkeypatch.setattr(signals, "REPEAT_S", 0.0)
    stop, reached = StopOnSignals(["SIGUSR1"]), []
    with stop, pytest.raises(Interrupted), stop.training(Requests()):
        os.kill(os.getpid(), SIG)
        reached.append("first")
        os.kill(os.getpid(), SIG)  # a second signal: at once (a step that never ends can be left)
        reached.append("second")
    assert reached == ["first"]


def test_while_the_record_is_written_a_signal_is_only_noted(previous):
    stop = StopOnSignals(["SIGUSR1", "SIGTERM"])
    with stop:
        stop.defer()
        os.kill(os.getpid(), SIG)
    assert stop.interrupted().signum == SIG and previous.calls == []


def test_without_a_previous_handler_the_process_exits_128_plus_n():
    original = signal.signal(SIG, signal.SIG_DFL)
    try:
        stop = StopOnSignals(["SIGUSR1"])
        with stop, pytest.raises(Interrupted):
            os.kill(os.getpid(), SIG)
        with pytest.raises(SystemExit) as exited:
            stop.interrupted().hand_on()
        assert exited.value.code == 128 + SIG and signal.getsignal(SIG) == signal.SIG_DFL
    finally:
        signal.signal(SIG, original)
    assert Interrupted(signal.SIGTERM).exit_code == 143 and Interrupted(signal.SIGINT).exit_code == 130
    with pytest.raises(SystemExit) as exited:  # Python's own Ctrl-C handler is the default, not chained
        Interrupted(signal.SIGINT, signal.default_int_handler).hand_on()
    assert exited.value.code == 130


def test_signal_names_are_checked():
    assert signals_named(["SIGTERM", "int", "USR2", "SIGTERM"]) == (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2)
    for name in ("SIGKILL", "SIGSTOP", "SIGNOPE"):
        refusal = f"run.stop_signals: '{name}' is not a signal a process can catch. Fix:"
        with pytest.raises(RepCaliError, match=refusal):
            signals_named([name])
