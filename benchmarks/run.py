"""Run the benchmarks; write one JSON per benchmark and a Markdown summary of every JSON in the folder.

    python -m benchmarks.run                         # make bench: quick, under 5 minutes on 2 CPU cores
    python -m benchmarks.run --mode full             # make bench-full
    python -m benchmarks.run --only startup tables   # some of them; the summary keeps the others' last figures
    python -m benchmarks.run --mode full --device cuda --only calibration_overhead --out benchmarks/results/gpu-h100

Benchmarks measure and report; none of them fails on a missed target (the summary says so).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from datetime import datetime, timezone
from importlib import import_module
from pathlib import Path

from benchmarks.measure import OFFLINE_ENV, ROOT

BENCHMARKS = ("calibration_overhead", "framework_vs_hf", "evaluation", "startup", "tables")
SUMMARY_NAME = "summary.md"
COLUMNS = ("case", "measure", "baseline", "compared", "result", "target", "verdict")


def _machine_line(machine: dict) -> str:
    versions = machine["versions"]
    gpus = ", ".join(machine["gpus"]) or "no GPU"
    load = machine.get("load_average_1_5_15")
    return (
        f"{machine['cpu']}, {machine['cpus_usable']} of {machine['cpu_count']} CPUs usable, "
        f"torch threads {machine['torch_threads']}, {gpus}; torch {versions['torch']}, "
        f"transformers {versions['transformers']}, Python {versions['python']}"
        + (f"; load average at start {load[0]:.1f}" if load else "")
    )


def write_summary(out: Path) -> Path:
    """summary.md from every benchmark JSON in ``out``, in the benchmarks' order."""
    results = {path.stem: json.loads(path.read_text()) for path in sorted(out.glob("*.json"))}
    lines = [
        "# Benchmarks",
        "",
        "Written by `python -m benchmarks.run` (`make bench`, `make bench-full`); one JSON per benchmark beside "
        "this file holds every sample. Ratios are medians of per-round ratios (variants interleaved, first "
        "variant rotating); IQR = interquartile range, n = rounds.",
    ]
    for name in sorted(results, key=lambda n: BENCHMARKS.index(n) if n in BENCHMARKS else len(BENCHMARKS)):
        result = results[name]
        lines += [
            "",
            f"## {result['title']}",
            "",
            f"*{result['mode']} mode, {result['finished_at']}, {result['seconds']:.0f} s; "
            f"{_machine_line(result['machine'])}.*",
            "",
            result["method"],
            "",
            "| " + " | ".join(COLUMNS) + " |",
            "|" + "---|" * len(COLUMNS),
        ]
        lines += ["| " + " | ".join(row.get(column, "") for column in COLUMNS) + " |" for row in result["rows"]]
    path = out / SUMMARY_NAME
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("smoke", "quick", "full"), default="quick")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS))
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--out", type=Path, help="default: benchmarks/results/<mode>")
    args = parser.parse_args(argv)
    args.out = args.out or ROOT / "benchmarks" / "results" / args.mode
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)

    import torch

    from benchmarks.measure import machine_info
    from repcali.runs import write_json_atomic

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    args.out.mkdir(parents=True, exist_ok=True)
    errors = 0
    for name in args.only:
        print(f"[bench] {name} ({args.mode}, {device}) ...", file=sys.stderr, flush=True)
        machine = machine_info()
        start = time.perf_counter()
        module = import_module(f"benchmarks.{name}")
        result = {"name": name, "method": module.__doc__.split("\n\n")[1].replace("\n", " "), "status": "ok"}
        try:
            result |= module.run(args.mode, device)  # title, results, rows
        except Exception as error:  # one broken benchmark must not hide the others' figures
            errors += 1
            traceback.print_exc()
            result |= {"title": name, "status": "error", "error": repr(error)}
            result["rows"] = [{"case": "", "result": f"error: {error!r}"[:300]}]
        result.update(
            mode=args.mode,
            device=device,
            seconds=time.perf_counter() - start,
            finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            machine=machine,
        )
        write_json_atomic(args.out / f"{name}.json", result)
        print(f"[bench] {name}: {result['status']} in {result['seconds']:.0f} s", file=sys.stderr, flush=True)
    summary = write_summary(args.out)
    print(summary.read_text())
    print(f"Wrote {summary} and {len(args.only)} JSON file(s) in {args.out}.")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
