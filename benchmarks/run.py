"""Run the benchmarks; write one JSON per benchmark and a Markdown summary of every JSON in the folder.

    python -m benchmarks.run                  # make bench: quick, about 11 minutes on 2 CPU cores
    python -m benchmarks.run --mode full      # make bench-full
    python -m benchmarks.run --only startup tables_build   # some; the summary keeps the others' last figures
    python -m benchmarks.run --mode full --device cuda --only calibration_overhead --out benchmarks/results/gpu-h100
    python -m benchmarks.run --summary-only --out benchmarks/results/quick   # re-render summary.md from the JSON

Benchmarks measure and report; none of them fails on a missed target (the summary says so).

Adding a benchmark: write ``benchmarks/<name>.py`` with ``run(mode, device) -> Benchmark``
(``benchmarks.contract``: title, method text, rows, raw results; build each row's result, target
and verdict with ``judged``, time variants with ``measure.interleave``), sized per mode (smoke:
seconds, quick: a share of the ~11 minutes of ``make bench``, full: as long as it needs), and add
``<name>`` to ``BENCHMARKS`` below. Its figures go to ``<name>.json`` and a section of
summary.md; check it with ``python -m benchmarks.run --mode smoke --only <name> --out /tmp/bench``.
"""

from __future__ import annotations

import os

from repcali.threads import wait_policy

os.environ.update(wait_policy(os.environ))  # first, before anything loads torch: waiting threads sleep, never spin

import argparse
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timezone
from importlib import import_module
from pathlib import Path
from typing import Any

from benchmarks.contract import Benchmark, Row
from benchmarks.measure import OFFLINE_ENV, ROOT
from benchmarks.summary import SUMMARY_NAME, write_summary

# The registry: modules of benchmarks/, each with run(mode, device) -> Benchmark, in the summary's order.
BENCHMARKS = (
    "calibration_overhead",
    "framework_vs_hf",
    "evaluation",
    "startup",
    "tables_build",
    "checkpointing",
    "wandb_fallback",
    "concurrency",
)

RunFunction = Callable[[str, str], Benchmark]


def record(name: str, run: RunFunction, mode: str, device: str) -> dict[str, Any]:
    """Run one benchmark into its JSON record; an error becomes the record (one broken benchmark hides no other)."""
    from benchmarks.measure import machine_info

    machine = machine_info()
    start = time.perf_counter()
    try:
        benchmark, status = run(mode, device), "ok"
    except Exception as error:
        traceback.print_exc()
        failure = Row(case=name, measure="run", result=f"error: {error!r}"[:300], verdict="error")
        benchmark, status = Benchmark(title=name, method="", rows=[failure]), "error"
    return {
        "name": name,
        **asdict(benchmark),
        "status": status,
        "mode": mode,
        "device": device,
        "seconds": time.perf_counter() - start,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
    }


def run_benchmarks(runs: dict[str, RunFunction], mode: str, device: str, out: Path) -> int:
    """Each benchmark's JSON into ``out`` as it finishes, then summary.md; return how many failed."""
    from repcali.runs import write_json_atomic

    errors = 0
    for name, run in runs.items():
        print(f"[bench] {name} ({mode}, {device}) ...", file=sys.stderr, flush=True)
        result = record(name, run, mode, device)
        write_json_atomic(out / f"{name}.json", result)
        errors += result["status"] != "ok"
        print(f"[bench] {name}: {result['status']} in {result['seconds']:.0f} s", file=sys.stderr, flush=True)
    write_summary(out, BENCHMARKS)
    return errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("smoke", "quick", "full"), default="quick")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS))
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--out", type=Path, help="default: benchmarks/results/<mode>")
    parser.add_argument("--summary-only", action="store_true", help="re-render summary.md from the JSON in --out")
    args = parser.parse_args(argv)
    out = args.out or ROOT / "benchmarks" / "results" / args.mode
    if args.summary_only:
        print(write_summary(out, BENCHMARKS).read_text())
        return 0
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)

    import torch

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    runs = {name: import_module(f"benchmarks.{name}").run for name in args.only}
    errors = run_benchmarks(runs, args.mode, device, out)
    print((out / SUMMARY_NAME).read_text())
    print(f"Wrote {out / SUMMARY_NAME} and {len(runs)} JSON file(s) in {out}.")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
