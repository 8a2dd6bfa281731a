"""Benchmark 4: start-up: wall time of ``python train.py --cfg job`` and of a rerun skipped as completed."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from benchmarks.contract import Benchmark, Row, judged
from benchmarks.measure import interleave, run_command, summarize

TITLE = "Start-up: printing the config, and skipping a completed run"
METHOD = """
Both are fresh processes timed from launch to exit, as a user waits for them. The completed run
they skip is made first by a real (short) ``train.py`` run. For scale, the same is timed for a
bare ``python -c pass`` (the interpreter's floor) and for ``import torch, transformers`` (what
these two paths would cost if they loaded the training stack, which they must not).
"""

TARGET_S = 3.0
ROUNDS = {"smoke": 1, "quick": 3, "full": 15}
FAST_RUN = [
    "trainer.max_steps=1",
    "trainer.eval_strategy=no",
    "task.max_eval_samples=2",
    "task.generation.num_beams=2",
    "task.generation.max_new_tokens=2",
    "save_model=false",
]


def run(mode: str, device: str) -> Benchmark:
    with tempfile.TemporaryDirectory(prefix="repcali-bench-") as work:
        run_args = [sys.executable, "train.py", *FAST_RUN, f"runs_dir={Path(work) / 'runs'}"]
        run_command(run_args)  # the completed run that the skipped rerun finds (and a warm file cache)
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "import torch, transformers": [sys.executable, "-c", "import torch, transformers"],
            "train.py --cfg job": [sys.executable, "train.py", "--cfg", "job"],
            "train.py, completed run skipped": run_args,
        }
        samples = interleave(
            {name: lambda c=command: run_command(c) for name, command in commands.items()}, ROUNDS[mode]
        )  # no warm-up: the run above has already loaded every file these read
    stats = {name: summarize(values) for name, values in samples.items()}
    seconds = {name: f"{values['median']:.2f} s" for name, values in stats.items()}
    reference = f"python -c pass {seconds['python -c pass']}; " + (
        f"import torch, transformers {seconds['import torch, transformers']}"
    )
    case = "fresh process, launch to exit"
    rows = [
        Row(case, name, reference, seconds[name], **judged(stats[name], ".2f", " s", TARGET_S))
        for name in ("train.py --cfg job", "train.py, completed run skipped")
    ]
    return Benchmark(TITLE, METHOD, rows, [{"seconds": stats}])
