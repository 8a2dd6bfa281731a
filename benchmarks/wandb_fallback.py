"""Benchmark 7: what W&B costs a run where the server cannot be reached (a compute node without network),
with an API key set: deciding the mode, then W&B's offline start and finish, per run.

Run alone as ``python -m benchmarks.wandb_fallback <runs> <out.json>``, it is one worker process: ``runs``
runs' W&B starts in a row, as a sweep in one process (Hydra's basic launcher) makes them.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from benchmarks.contract import Benchmark, Row, judged
from benchmarks.measure import OFFLINE_ENV, ROOT, interleave, summarize

TITLE = "W&B without a reachable server: the per-run cost of deciding offline"
METHOD = """
Each sample is a fresh process that makes the W&B calls of ``runs`` runs in a row, as a sweep in
one process does: ``repcali.tracking.wandb_mode`` (the decision: explicit mode, API key, then a TCP
probe of the server, once per process), ``start_wandb`` (``wandb.init``) and ``finish_wandb``
(summary, ``wandb.finish``), each into its own run directory; the first run of a process is
reported apart from the following ones (probe cached, W&B's service already up). Variants: no
API key (offline without a probe: W&B's own offline start and finish, the floor); a 40-character
dummy key with the server (``WANDB_BASE_URL``) a closed local port, which refuses at once; and the
same key with a local port that never answers (a listener whose accept queue is full, so the
kernel drops the connection attempt, as a firewall does), which waits out
``logger.probe_timeout_s`` (3 s). Nothing leaves the machine: the server is on 127.0.0.1, proxies
and ``WANDB_*`` settings are removed from the workers' environment, HOME is empty (no netrc);
every run must end offline with an ``offline-run-*`` folder, or the benchmark fails. Variants
rotate within rounds. The baseline column is the behaviour before the mode was decided up front,
as measured when issue 12 was filed (key set, no network: 88 s of a 91 s run waiting for the online
attempt), not re-measured here: it would wait out W&B's init timeout per sample.
"""

OLD_WAIT_S = 88.0  # issue 12: W&B's online attempt, key set and no network, before it fell back (91 s run)
TARGET_S = 5.0  # the decision's wait: "never wait more than a few seconds per run" (issue 12)
VARIANTS = ("no API key", "key, server refused", "key, server silent")
DUMMY_KEY = "0123456789abcdef" * 2 + "01234567"  # 40 characters, the length wandb.login accepts
PROXIES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


@dataclass(frozen=True)
class Setting:
    rounds: int  # fresh processes per variant
    runs: int  # runs per process: the first, then runs - 1 following


SETTINGS = {"smoke": Setting(1, 2), "quick": Setting(3, 3), "full": Setting(7, 5)}


@contextmanager
def local_ports() -> Iterator[dict[str, int]]:
    """A closed port (bound, then closed: refused) and a silent one (backlog 0, queue filled: dropped)."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        refused = closed.getsockname()[1]
    with socket.socket() as server, socket.socket() as filler:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        filler.connect(server.getsockname())  # the one queued connection; nothing accepts it
        yield {"key, server refused": refused, "key, server silent": server.getsockname()[1]}


def worker_env(work: Path, variant: str, ports: dict[str, int]) -> dict[str, str]:
    """The environment as a compute node has it: W&B settings and proxies gone, a key or none, a local server."""
    drop = {*PROXIES, "RANK", "LOCAL_RANK", "WORLD_SIZE"}
    env = {key: value for key, value in os.environ.items() if key not in drop and not key.startswith("WANDB_")}
    env.update({key: value for key, value in OFFLINE_ENV.items() if key != "WANDB_MODE"})
    port = ports.get(variant, ports["key, server refused"])  # no key: never probed, still never the real server
    env.update(
        HOME=str(work / "home"),
        WANDB_CONFIG_DIR=str(work / "wandb-config"),
        WANDB_CACHE_DIR=str(work / "wandb-cache"),
        WANDB_DATA_DIR=str(work / "wandb-data"),
        WANDB_BASE_URL=f"http://127.0.0.1:{port}",
    )
    if variant != "no API key":
        env["WANDB_API_KEY"] = DUMMY_KEY
    return env


def one_process(variant: str, setting: Setting, ports: dict[str, int]) -> list[dict[str, Any]]:
    """One worker process's runs, each checked to have ended offline."""
    with tempfile.TemporaryDirectory(prefix="repcali-bench-wandb-") as folder:
        work = Path(folder)
        out = work / "samples.json"
        command = [sys.executable, "-m", "benchmarks.wandb_fallback", str(setting.runs), str(out)]
        env = worker_env(work, variant, ports)
        process = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        if process.returncode != 0:
            raise RuntimeError(f"{variant}: worker failed ({process.returncode}):\n{process.stderr[-3000:]}")
        runs = json.loads(out.read_text())
    for run in runs:
        if run["mode"] != "offline" or not run["offline_folder"]:
            raise RuntimeError(f"{variant}: a run did not end offline: {run}")
    return runs


def worker(runs: int, out: Path) -> None:
    import wandb  # noqa: F401  imported before any timing: what is timed is W&B's start, not Python's import

    from benchmarks.measure import compose_config
    from repcali.identity import RunIdentity
    from repcali.tracking import finish_wandb, start_wandb, wandb_mode

    cfg = compose_config(["logger=wandb"])
    identity = RunIdentity.of(cfg)
    samples = []
    with tempfile.TemporaryDirectory(prefix="repcali-bench-wandb-runs-") as folder:
        for index in range(runs):
            run_dir = Path(folder) / f"run{index}"
            run_dir.mkdir()
            results = SimpleNamespace(metrics={"rouge1": 20.0}, params={"total": 1}, status="completed", run_dir="")
            start = time.perf_counter()
            mode, why = wandb_mode(cfg)  # start_wandb asks again: the probe's answer is cached by then
            decided = time.perf_counter()
            start_wandb(cfg, run_dir, identity)
            started = time.perf_counter()
            finish_wandb(results)
            finished = time.perf_counter()
            samples.append(
                {
                    "mode": mode,
                    "why": why,
                    "decide_s": decided - start,
                    "init_s": started - decided,
                    "finish_s": finished - started,
                    "total_s": finished - start,
                    "offline_folder": bool(list((run_dir / "wandb").glob("offline-run-*"))),
                }
            )
    out.write_text(json.dumps(samples))


def run(mode: str, device: str) -> Benchmark:
    setting = SETTINGS[mode]
    processes: dict[str, list[list[dict[str, Any]]]] = {variant: [] for variant in VARIANTS}

    with local_ports() as ports:

        def variant_sample(variant: str):
            def sample() -> float:
                processes[variant].append(one_process(variant, setting, ports))
                return processes[variant][-1][0]["total_s"]

            return sample

        interleave({variant: variant_sample(variant) for variant in VARIANTS}, setting.rounds)

    results = []
    for variant in VARIANTS:
        first = [runs[0] for runs in processes[variant]]
        following = [run for runs in processes[variant] for run in runs[1:]]
        results.append(
            {
                "variant": variant,
                "setting": asdict(setting),
                "why": first[0]["why"],
                **{
                    f"{which}_{key}": summarize([run[key] for run in runs])
                    for which, runs in (("first", first), ("following", following))
                    for key in ("decide_s", "init_s", "finish_s", "total_s")
                },
            }
        )
        for row in rows(results[-1]):  # progress, so a run cut short still shows what it measured
            print(f"[wandb_fallback] {row.case}: {row.measure}: {row.result}", file=sys.stderr)
    return Benchmark(TITLE, METHOD, [row for result in results for row in rows(result)], results)


def rows(result: dict[str, Any]) -> list[Row]:
    """Per variant: the decision's wait (judged: "a few seconds"), then W&B's whole cost per run."""
    case = f"{result['variant']} (wandb {version('wandb')}; {result['why']})"
    old = f"{OLD_WAIT_S:.0f} s (issue 12)" if result["variant"] != "no API key" else ""
    first, following = result["first_total_s"], result["following_total_s"]
    return [
        Row(
            case,
            "first run of a process: deciding the mode",
            **judged(result["first_decide_s"], ".3f", " s", TARGET_S),
        ),
        Row(
            case,
            "first run of a process: mode + init + finish",
            old,
            f"{first['median']:.2f} s",
            **judged(first, ".2f", " s"),
        ),
        Row(
            case,
            "each following run: mode + init + finish",
            old,
            f"{following['median']:.2f} s",
            **judged(following, ".2f", " s"),
        ),
    ]


def version(package: str) -> str:
    from importlib.metadata import version as installed

    return installed(package)


if __name__ == "__main__":
    worker(int(sys.argv[1]), Path(sys.argv[2]))
