"""``python -m repcali.tables --runs runs --out tables``: what ``make tables`` runs."""

from __future__ import annotations

import os

from repcali.threads import wait_policy

os.environ.update(wait_policy(os.environ))  # first, before anything loads torch: waiting threads sleep, never spin

import argparse
import time
from pathlib import Path

from repcali.tables import build
from repcali.tables.significance import RESAMPLES


def main(argv: list[str] | None = None) -> None:
    cli = argparse.ArgumentParser(prog="python -m repcali.tables", description="Paper tables from results.json.")
    cli.add_argument("--runs", type=Path, default=Path("runs"), help="folder scanned for results.json (runs)")
    cli.add_argument("--out", type=Path, default=Path("tables"), help="where tables are written (tables)")
    resamples = f"resamples of the test-set-only bootstrap, p_test_set_only ({RESAMPLES})"
    cli.add_argument("--resamples", type=int, default=RESAMPLES, help=resamples)
    args = cli.parse_args(argv)
    start = time.perf_counter()
    written = build(args.runs, args.out, args.resamples)
    for path in written:
        print(path)
    seconds = time.perf_counter() - start
    print(f"{len(written) // 4} tables from {args.runs} in {seconds:.1f} s" if written else f"No runs in {args.runs}.")


if __name__ == "__main__":
    main()
