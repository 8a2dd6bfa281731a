"""Benchmark 8: runs that share a machine (issue 20): N default runs at once against one alone, and the default
thread count against the best one, each a real ``python train.py`` process as a user starts it.

The commands start with the environment stripped of every thread variable (``OMP_*``, ``GOMP_SPINCOUNT``,
``KMP_BLOCKTIME``, ``MKL_NUM_THREADS``, ``REPCALI_JOBS``): what the product does by itself is measured, with no
thread variable set by hand. Independent commands (two terminals) cannot know of each other: each takes every
core (its share of one job) unless its model is small, so what keeps them apart is the wait policy
(:mod:`repcali.threads`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.contract import Benchmark, Row, judged
from benchmarks.measure import OFFLINE_ENV, ROOT, interleave, paired_ratio, summarize
from repcali.results import RESULTS_NAME, read_results
from repcali.threads import COUNT_VARIABLES, JOBS_ENV, WAIT_VARIABLES, available_cores

TITLE = "Concurrency: runs that share a machine, and the default thread count"
METHOD = """
Each run is ``python train.py`` on the embedded default (tiny T5 on ACLSum) with validation off and a
fixed number of steps, in a runs folder of its own, started with no thread variable in its environment
(the product's defaults: waiting OpenMP threads sleep; a command alone computes on every core, except that
a model this small computes on one: repcali/threads.py says why). "N at
once": N such commands started together, timed until the last one exits, against one alone (two
terminals: neither knows of the other). "run.threads=t": one alone at t threads, t from 1 to the cores
(powers of two, and the cores); the default's figure is one alone. Variants are interleaved in rounds; the
1-minute load average before each round is recorded (a busy machine shows up in it). Training time is
each run's own ``train_s`` in ``results.json`` (start-up, data and the test-split scoring excluded).
"""

RUN = ["trainer.max_steps=60", "trainer.eval_strategy=no"]  # as issue 20 measured: validation off, 60 steps
SMOKE_RUN = [
    "trainer.max_steps=2",
    "trainer.eval_strategy=no",
    "task.max_eval_samples=2",
    "task.generation.num_beams=2",
    "task.generation.max_new_tokens=2",
    "save_model=false",
]
SIZES = {"smoke": (SMOKE_RUN, 1), "quick": (RUN, 2), "full": (RUN, 5)}  # the run, rounds


@dataclass(frozen=True)
class Case:
    label: str
    overrides: tuple[str, ...]  # after the mode's run (a later override wins)
    fills_cores: bool  # one run alone keeps every core busy: N at once is compared with N one after the other

    def threads(self, cores: int) -> tuple[int, str]:
        """What the product gives this model by itself: its share of the cores, or one thread where it is small
        (:data:`repcali.threads.SMALL_MODEL`; recorded as its share where one core is all there is)."""
        if self.fills_cores or cores == 1:
            return cores, "share"
        return 1, "small model"


CASES = (
    Case("tiny_t5 (0.4M) on ACLSum", (), fills_cores=False),  # the embedded default, as issue 20 measured it
    # real weights (49M, offline): a model that takes every core, where only the wait policy keeps runs apart
    Case(
        "minilm_bert2bert (49M) on ACLSum, 20 test examples",
        ("model=minilm_bert2bert", "trainer.max_steps=10", "task.max_eval_samples=20", "save_model=false"),
        fills_cores=True,
    ),
)
TARGET_TOGETHER = 1.2  # two at once, each within 1.2× of one alone
TARGET_FILLED = 1.1  # a model that fills the cores: two at once within 1.1× of two one after the other
TARGET_DEFAULT = 1.1  # the default thread count within 10 % of the best
THREAD_VARIABLES = (*WAIT_VARIABLES, *COUNT_VARIABLES, JOBS_ENV)
LIBGOMP_DEFAULT = {"GOMP_SPINCOUNT": "300000"}  # libgomp's own spin before sleeping: what the policy replaces


def run_together(overrides: list[str], count: int, work: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """``count`` ``train.py`` commands started at once; wall-clock seconds until the last exits, each run's
    training seconds and recorded threads, and the load average before."""
    environment = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES} | OFFLINE_ENV | (env or {})
    folders = [Path(tempfile.mkdtemp(prefix="run-", dir=work)) for _ in range(count)]
    load = os.getloadavg()[0]
    start = time.perf_counter()
    processes = []
    for folder in folders:
        with open(folder / "stderr.txt", "w") as stderr:
            command = [sys.executable, "train.py", *overrides, f"runs_dir={folder / 'runs'}"]
            processes.append(
                subprocess.Popen(command, cwd=ROOT, env=environment, stdout=subprocess.DEVNULL, stderr=stderr)
            )
    for process in processes:
        process.wait(timeout=1800)
    wall = time.perf_counter() - start
    for process, folder in zip(processes, folders, strict=True):
        if process.returncode != 0:
            raise RuntimeError(
                f"train.py {' '.join(overrides)} failed:\n{(folder / 'stderr.txt').read_text()[-3000:]}"
            )
    records = [read_results(path.parent) for folder in folders for path in (folder / "runs").rglob(RESULTS_NAME)]
    return {
        "wall_s": wall,
        "train_s": [record.timings["train_s"] for record in records],
        "threads": [record.host["threads"] for record in records],
        "load_1min": load,
    }


def thread_counts(cores: int) -> list[int]:
    """1, 2, 4, ... below the cores, and the cores."""
    return sorted({*(2**i for i in range(cores.bit_length()) if 2**i < cores), cores})


def run(mode: str, device: str) -> Benchmark:
    overrides, rounds = SIZES[mode]
    cores = available_cores()
    rows, raw = [], []
    for case in CASES if mode != "smoke" else CASES[:1]:
        case_rows, case_raw = measure(case, [*overrides, *case.overrides], rounds, mode, cores)
        rows += case_rows
        raw.append(case_raw)
    return Benchmark(TITLE, METHOD, rows, raw)


def measure(case: Case, overrides: list[str], rounds: int, mode: str, cores: int) -> tuple[list[Row], dict]:
    """One model's rows: N at once against one alone (or N one after the other), and its default thread count
    against its best."""
    counts = thread_counts(cores)
    shapes = {"1 alone": (1, [], None)}  # name: commands at once, extra overrides, extra environment
    shapes |= {f"{n} at once": (n, [], None) for n in sorted({2, cores} - {1})}
    shapes |= {f"run.threads={t}": (1, [f"run.threads={t}"], None) for t in counts}
    if mode == "full":  # what the policy replaces (libgomp's spin): minutes for two at once on 2 cores
        shapes["2 at once, libgomp's spin"] = (2, [], LIBGOMP_DEFAULT)
    samples: dict[str, list[dict[str, Any]]] = {name: [] for name in shapes}

    def timed(name: str, work: Path):
        def once() -> float:
            count, extra, env = shapes[name]
            samples[name].append(run_together([*overrides, *extra], count, work, env))
            return samples[name][-1]["wall_s"]

        return once

    with tempfile.TemporaryDirectory(prefix="repcali-bench-concurrency-") as work:
        walls = interleave({name: timed(name, Path(work)) for name in shapes}, rounds)
    default = case.threads(cores)
    check_threads(samples, default)

    loads = summarize([sample["load_1min"] for values in samples.values() for sample in values])
    steps = [o for o in overrides if o.startswith("trainer.max_steps=")][-1].split("=")[1]  # the last one wins
    load = f"load average {loads['min']:.1f}–{loads['max']:.1f}"
    label = f"{case.label}, {steps} steps, validation off; {cores} cores; {load}"

    def seconds(values: list[float]) -> str:
        return f"{summarize(values)['median']:.1f} s"

    train = {name: [max(sample["train_s"]) for sample in values] for name, values in samples.items()}  # the slowest
    rows = []
    for name in [name for name in walls if "at once" in name]:
        together = int(name.split()[0])
        # a model that keeps every core busy cannot do twice the work in the same time: its N at once is
        # compared with N one after the other (sharing must cost nothing beyond the work itself)
        what = f"{together} one after the other" if case.fills_cores else "1 alone"
        target = (TARGET_FILLED if case.fills_cores else TARGET_TOGETHER) if name == "2 at once" else None
        for measure_name, values in (("wall", walls), ("training (train_s)", train)):
            base = [value * (together if case.fills_cores else 1) for value in values["1 alone"]]
            ratio = judged(paired_ratio(values[name], base), ".2f", "×", target if measure_name == "wall" else None)
            rows.append(Row(label, f"{name} ÷ {what}, {measure_name}", seconds(base), seconds(values[name]), **ratio))
    best = min(counts, key=lambda t: summarize(walls[f"run.threads={t}"])["median"])
    ratio = judged(paired_ratio(walls["1 alone"], walls[f"run.threads={best}"]), ".2f", "×", TARGET_DEFAULT)
    best_wall = seconds(walls[f"run.threads={best}"])
    measure_name = f"default threads ({default[0]}, {default[1]}) ÷ best (run.threads={best}), wall"
    rows.append(
        Row(label, measure_name, f"{best_wall} at {best}", f"{seconds(walls['1 alone'])} at {default[0]}", **ratio)
    )
    stats = {name: summarize(values) for name, values in walls.items()}
    return rows, {"case": case.label, "wall_s": stats, "samples": samples, "cores": cores}


def check_threads(samples: dict[str, list[dict[str, Any]]], default: tuple[int, str]) -> None:
    """Every run computed with the threads and wait policy the product gives it (else this measures something else)."""
    for name, values in samples.items():
        count, source = (int(name.split("=")[1]), "run.threads") if name.startswith("run.threads") else default
        wait = LIBGOMP_DEFAULT if "spin" in name else {"OMP_WAIT_POLICY": "PASSIVE"}
        found = {(t["count"], t["from"], tuple(t["wait_policy"].items())) for s in values for t in s["threads"]}
        if found != {(count, source, tuple(wait.items()))}:
            raise RuntimeError(f"{name}: the runs recorded threads {found}, not {count} from {source}, {wait}")
