"""How every benchmark measures: interleaved rounds, robust statistics, the machine, peak tensor memory.

Timings on a shared machine drift (other jobs come and go), so compared variants run in rounds,
one sample of each per round, with the first variant rotating (A B, B A, A B, ...): drift then
hits every variant alike. Ratios are taken per round (paired) and summarised by their median and
interquartile range, so a noisy machine shows up as a wide IQR rather than as a fake speed-up.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from repcali.runs import git_info, package_versions

ROOT = Path(__file__).resolve().parents[1]
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "WANDB_MODE": "disabled",
    "TOKENIZERS_PARALLELISM": "false",
}


def summarize(samples: Sequence[float]) -> dict[str, Any]:
    """Median, quartiles, IQR, min and max of a list of samples (the median is robust to outliers)."""
    values = sorted(samples)
    if len(values) >= 2:
        q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    else:
        q1 = q3 = values[0]
    return {
        "median": statistics.median(values),
        "q1": q1,
        "q3": q3,
        "iqr": q3 - q1,
        "min": values[0],
        "max": values[-1],
        "n": len(values),
        "samples": list(samples),
    }


def interleave(variants: dict[str, Callable[[], float]], rounds: int, warmup: int = 0) -> dict[str, list[float]]:
    """Call each variant once per round, rotating which goes first; return every variant's samples in round order.

    ``warmup`` untimed calls of each variant come first (caches, lazy initialisation, page faults).
    """
    names = list(variants)
    for _ in range(warmup):
        for name in names:
            variants[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(variants[name]())
    return samples


def paired_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> dict[str, Any]:
    """Per-round ratios numerator[i] / denominator[i], summarised (pairs share the machine's state at the time)."""
    return summarize([a / b for a, b in zip(numerator, denominator, strict=True)])


def timed(function: Callable[[], Any], synchronize: Callable[[], None] = lambda: None) -> float:
    """Wall-clock seconds of one call (``synchronize`` waits for asynchronous devices on both sides)."""
    synchronize()
    start = time.perf_counter()
    function()
    synchronize()
    return time.perf_counter() - start


def run_command(command: list[str], env: dict[str, str] | None = None, timeout: float = 900) -> float:
    """Wall-clock seconds of a subprocess, as a user would wait for it; fails loudly if it fails."""
    start = time.perf_counter()
    process = subprocess.run(
        command,
        cwd=ROOT,
        env={**os.environ, **OFFLINE_ENV, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    elapsed = time.perf_counter() - start
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}):\n{process.stderr[-3000:]}")
    return elapsed


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """What the numbers depend on: CPU, cores, threads, GPU, library versions, and how busy the machine was."""
    import torch

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpus": gpus,
        "cuda": torch.version.cuda if gpus else None,
        "platform": platform.platform(),
        "python_executable": sys.executable,
        "load_average_1_5_15": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "versions": package_versions(),
        "git": git_info(),
    }


def tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def cpu_peak_tensor_bytes(step: Callable[[], Any]) -> int:
    """Peak increase of live CPU tensor bytes during ``step``, from the profiler's allocator records.

    Every CPU tensor is allocated and freed through c10's allocator, which the profiler records with
    ``profile_memory=True``; replaying those records in time order gives the exact peak, the CPU
    analogue of ``torch.cuda.max_memory_allocated``. Process RSS is not used: glibc keeps freed
    pages, so an RSS peak depends on whatever ran before, and ``tracemalloc`` sees no tensor memory.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        step()
    # kineto_results is the profiler's raw event list; the public FunctionEvent view folds
    # allocations into (nested) operator totals, which cannot be replayed in time order.
    records = [e for e in profiler.profiler.kineto_results.events() if e.name() == "[memory]"]
    live = peak = 0
    for record in sorted(records, key=lambda e: e.start_ns()):
        if record.device_type().name == "CPU":
            live += record.nbytes()
            peak = max(peak, live)
    return peak


def compose_configs(overrides: list[list[str]]) -> list:
    """``train.py``'s composed config for each list of overrides (Hydra's compose API, no run started)."""
    from hydra import compose

    from repcali.compose import hydra_compose

    with hydra_compose():
        return [compose("train", overrides=each) for each in overrides]


def compose_config(overrides: list[str]):
    return compose_configs([overrides])[0]
