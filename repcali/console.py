"""What ``train.py`` prints: a line per phase and per validation, each distinct warning once; everything with ``-v``.

A default run printed about 240 lines, most of them progress bars (a pipe or a SLURM log keeps every redraw)
and the same warning again at each validation, while ``train.log`` held no loss. Now Hydra's job logging
(``conf/hydra/job_logging/repcali.yaml``) writes every record to ``train.log``, the training losses included,
and :class:`Console` lets through to the terminal the project's INFO lines and each distinct warning once.
Progress bars are off: a run is more often read from a log than watched, and the phase and validation lines,
timestamped, say where it is. ``-v`` (``hydra.verbose=repcali``) shows everything: every log line and warning,
and the libraries' progress bars; ``hydra.verbose=true`` adds every library's debug lines.
"""

from __future__ import annotations

import logging

_verbose: bool | None = None  # None: not set up by train.py (tests, notebooks): the libraries are left as they are
_shown: set[tuple[str, int, str]] = set()  # the warnings the console has shown this command (a sweep: all its jobs)


class Console(logging.Filter):
    """The console's share of the log (``train.log`` gets all of it): the ``repcali`` logger's lines from INFO
    up, and every warning or error, each distinct one once a command (Hydra sets up logging again for each
    job of a sweep: this filter is new each time, what it has shown is not); all of it when ``verbose``
    (``hydra.verbose``: true, a logger's name, or a list of them)."""

    def __init__(self, verbose: bool | str | list[str] | None = False) -> None:
        super().__init__()
        self.verbose = bool(verbose)

    def filter(self, record: logging.LogRecord) -> bool:
        if self.verbose:
            return True
        if record.levelno >= logging.WARNING:
            said = (record.name, record.levelno, record.getMessage())
            if said in _shown:
                return False
            _shown.add(said)
            return True
        return record.name == "repcali" and record.levelno >= logging.INFO


def set_up(verbose: bool, first: bool = True) -> None:
    """For a run of this process (a sweep's basic launcher runs several; ``first``: the command's first):
    Python warnings join the log (so they are in ``train.log`` and the console shows each once), and how
    verbose :func:`set_up_libraries` makes the libraries. Cheap: nothing heavy is imported, so a completed
    run is skipped as fast as before."""
    global _verbose
    _verbose = verbose
    if first:
        _shown.clear()
    logging.captureWarnings(True)


def quiet() -> bool:
    """Whether progress bars and the Trainer's own printing are off: ``train.py`` without ``-v``."""
    return _verbose is False


def set_up_libraries() -> None:
    """Once transformers and datasets are imported (:mod:`repcali.checks` imports them, before a run loads
    anything): their loggers write through the root logger's handlers, to ``train.log`` and the console's
    filter, instead of straight to stderr; their progress bars follow ``-v``."""
    if _verbose is None:
        return
    import datasets
    import transformers

    for name in ("transformers", "datasets"):
        library = logging.getLogger(name)
        library.handlers.clear()  # the stderr handler each adds to its logger when imported (and never again)
        library.propagate = True
    if _verbose:  # transformers' switch is the hub's too (downloads)
        transformers.utils.logging.enable_progress_bar()
        datasets.enable_progress_bars()
    else:
        transformers.utils.logging.disable_progress_bar()
        datasets.disable_progress_bars()
