"""Benchmark 4: start-up: wall time of ``python train.py --cfg job`` and of a rerun skipped as completed.

Both are fresh processes timed from launch to exit, as a user waits for them. The completed run
they skip is made first by a real (short) ``train.py`` run. For scale, the same is timed for a
bare ``python -c pass`` (the interpreter's floor) and for ``import torch, transformers`` (what
these two paths would cost if they loaded the training stack, which they must not).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.measure import interleave, run_command, summarize, verdict

TARGET_S = 3.0
ROUNDS = {"smoke": 1, "quick": 3, "full": 15}
FAST_RUN = [
    "trainer.max_steps=1",
    "task.max_eval_samples=2",
    "task.generation.num_beams=2",
    "task.generation.max_new_tokens=2",
    "save_model=false",
]


def run(mode: str, device: str) -> dict[str, Any]:
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
    reference = f"python -c pass {stats['python -c pass']['median']:.2f} s; import torch, transformers " + (
        f"{stats['import torch, transformers']['median']:.2f} s"
    )

    def row(name: str) -> dict[str, str]:
        s = stats[name]
        return {
            "case": "fresh process, launch to exit",
            "measure": name,
            "baseline": reference,
            "compared": f"{s['median']:.2f} s",
            "result": f"{s['median']:.2f} s (IQR {s['q1']:.2f} … {s['q3']:.2f}, n={s['n']})",
            "target": f"≤ {TARGET_S:g} s",
            "verdict": verdict(s, TARGET_S),
        }

    return {
        "title": "Start-up: printing the config, and skipping a completed run",
        "results": [{"seconds": stats}],
        "rows": [row("train.py --cfg job"), row("train.py, completed run skipped")],
    }
