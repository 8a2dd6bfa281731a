"""Quiet by default: a line per phase and per validation, each warning once, the losses in train.log; ``-v`` for
everything (repcali/console.py). The end-to-end check is the smoke sweep's (tests/test_sweeps.py: quiet_output)."""

from __future__ import annotations

import io
import logging
import re
import uuid
from pathlib import Path

import torch

from repcali.console import Console
from repcali.training import training_arguments
from tests import cli

STAMP = re.compile(r"^\[[^\]]*\]")  # a log line's time: the same warning logged twice differs only there


def repeated_warnings(output: str) -> list[str]:
    """Warning lines (a logged ``[WARNING]``, a Python ``UserWarning: ...``) that ``output`` shows more than
    once, timestamps aside."""
    lines = [STAMP.sub("", line).strip() for line in output.splitlines() if "warning" in line.lower()]
    return sorted({line for line in lines if lines.count(line) > 1})


def assert_quiet(output: str, run_dirs: list[Path]) -> None:
    """What a default run prints: no warning twice, no progress bar; its train.log: the losses."""
    assert not repeated_warnings(output), repeated_warnings(output)
    assert "it/s]" not in output and "%|" not in output, output[-3000:]
    for run_dir in run_dirs:
        log = (run_dir / "train.log").read_text()
        assert re.search(r"\[repcali\.trainer\]\[INFO\] - step \d+ of \d+: loss \d", log), log[-3000:]
        assert "train done in" in log and "load done in" in log


def console_lines(*records: tuple[str, int, str], verbose: bool = False) -> list[str]:
    """What the console shows of ``records`` (logger, level, message), logged through real loggers."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(Console(verbose))
    loggers = {name: logging.getLogger(name) for name, _, _ in records}
    levels = {name: logger.level for name, logger in loggers.items()}
    try:
        for logger in loggers.values():
            logger.addHandler(handler)
            logger.setLevel(logging.DEBUG)  # every record reaches the handler: the filter alone decides
            logger.propagate = False
        for name, level, message in records:
            loggers[name].log(level, message)
    finally:
        for name, logger in loggers.items():
            logger.removeHandler(handler)
            logger.setLevel(levels[name])
            logger.propagate = True
    return stream.getvalue().splitlines()


def test_the_console_shows_the_projects_lines_and_each_warning_once():
    warning = f"pin_memory is set but no accelerator is found {uuid.uuid4()}"  # unseen before in this process
    records = [
        ("repcali", logging.INFO, "load done in 0.2 s"),
        ("tests.library", logging.INFO, "Using default tokenizer."),  # a library's INFO: train.log's only
        ("repcali.trainer", logging.INFO, "step 10 of 20: loss 27.2"),  # the losses: train.log's only
        ("tests.library", logging.WARNING, warning),
        ("tests.library", logging.WARNING, warning),
        ("repcali", logging.INFO, "validation at step 2 of 20: rouge1 0.6"),
    ]
    assert console_lines(*records) == ["load done in 0.2 s", warning, "validation at step 2 of 20: rouge1 0.6"]
    assert len(console_lines(*records, verbose=True)) == len(records)  # -v: everything, each time


def test_dash_v_is_hydra_verbose_for_the_project():
    assert "verbose: repcali" in cli.here("train.py", "-v", "--cfg", "hydra").stdout
    assert "verbose: false" in cli.here("train.py", "--cfg", "hydra").stdout
    assert "verbose: true" in cli.here("train.py", "-v", "hydra.verbose=true", "--cfg", "hydra").stdout


def test_memory_is_pinned_only_for_a_gpu(compose_train, tmp_path):
    """Pinned memory speeds copies to a GPU; without one, torch warned at every DataLoader (11 times a run)."""
    assert training_arguments(compose_train(), tmp_path).dataloader_pin_memory is torch.cuda.is_available()
    explicit = compose_train("+trainer.dataloader_pin_memory=false")
    assert training_arguments(explicit, tmp_path).dataloader_pin_memory is False
