"""What a sweep will cost, before anything is submitted: runs, tokens, FLOPs and GPU-hours, per part and in total.

    python -m repcali.sweeps plan main_table                     # on an H100, the sweep as configured
    python -m repcali.sweeps plan main_table --gpu a100 --by model trainer.bf16=true

Per run, from its composed config (the sweep's cached grid points, :mod:`repcali.grid`):

- training tokens = training examples × epochs × (source + target tokens), each length the task's mean
  (``task.stats``) cut at the run's limits (``task.max_*_length``, ``model.max_positions``); with
  ``trainer.max_steps`` set, examples = steps × per-device batch × accumulation (one process);
- evaluation tokens = evaluated examples × (source + generated tokens × beams), generated tokens being
  the mean target length within the task's ``min/max_new_tokens``;
- FLOPs = 6·N·training tokens + 2·N·evaluation tokens (N = ``model.params``; Kaplan et al., 2020);
- GPU-hours = FLOPs / (MFU × the GPU's peak for the run's precision), training and generation each with
  its own MFU: measured by ``make bench-full`` on that GPU where a result is in ``benchmarks/results/``
  (same formulas on the calibration benchmark's step and generate times), otherwise the stated assumption.

What the approximation leaves out: attention's FLOPs (they grow with length²), padding, that encoder
tokens pass only the encoder's weights and decoder tokens only the decoder's (6·N·tokens counts every
weight for every token; an MFU measured with the same formula absorbs this for similar shapes), the
cheaper backward of parameter-efficient methods, evaluation during training, loading, and queueing.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repcali.config import PROJECT_ROOT

BENCH_RESULTS = PROJECT_ROOT / "benchmarks" / "results"


@dataclass(frozen=True)
class Gpu:
    name: str
    tensor_tflops: float  # dense bf16/fp16 tensor-core peak (without sparsity), vendor datasheet
    fp32_tflops: float  # plain fp32 peak: what fp32 matmuls use (torch leaves TF32 off by default)
    names: tuple[str, ...]  # how torch.cuda.get_device_name reports it, to find measurements


GPUS = {
    "v100": Gpu("NVIDIA V100 SXM2", 125, 15.7, ("V100",)),  # fp16 tensor cores; no bf16
    "a10": Gpu("NVIDIA A10", 125, 31.2, ("A10",)),
    "l4": Gpu("NVIDIA L4", 121, 30.3, ("L4",)),
    "l40s": Gpu("NVIDIA L40S", 362, 91.6, ("L40S",)),
    "a100": Gpu("NVIDIA A100 SXM4", 312, 19.5, ("A100",)),
    "h100": Gpu("NVIDIA H100 SXM5", 989, 67, ("H100 80GB HBM3", "H100 SXM")),
    "h100_pcie": Gpu("NVIDIA H100 PCIe", 756, 51, ("H100 PCIe",)),
    "h200": Gpu("NVIDIA H200 SXM", 989, 67, ("H200",)),
}
# Assumed where nothing is measured; the figures a reader should question first.
ASSUMED_MFU = {
    # bf16/fp16: about what make bench-full measured on an H100 (training 0.13-0.28, generation 0.006-0.011
    # for BART/T5 base and large, by the formulas above); the 0.35-0.45 often quoted for bf16 fine-tuning
    # is for larger models and batches than these.
    ("bf16", "train"): 0.2,
    ("bf16", "generate"): 0.01,
    # fp32 on plain CUDA cores is easier to keep busy, but nothing here measured it.
    ("fp32", "train"): 0.5,
    ("fp32", "generate"): 0.1,
}


@dataclass
class RunCost:
    """One run's tokens and FLOPs; ``missing`` names the figures its config lacks (then it is not costed)."""

    model: str
    task: str
    precision: str  # bf16 (bf16 or fp16 mixed precision) or fp32
    train_tokens: float = 0.0
    eval_tokens: float = 0.0
    train_flops: float = 0.0
    eval_flops: float = 0.0
    missing: list[str] = field(default_factory=list)


def run_cost(config: dict[str, Any]) -> RunCost:
    """The tokens and FLOPs of the run a resolved config describes (a grid point's ``config``)."""
    model, task, trainer = config["model"], config["task"], config["trainer"]
    stats, generation = task["stats"], task["generation"]
    precision = "bf16" if trainer.get("bf16") or trainer.get("fp16") else "fp32"
    cost = RunCost(model["name"], task["name"], precision)
    split = {"test": "test", "validation": "validation"}.get(task["eval_split"], task["eval_split"])
    needed = {"model.params": model.get("params"), "task.stats.source_tokens": stats["source_tokens"]}
    needed |= {"task.stats.target_tokens": stats["target_tokens"], f"task.stats.{split}": stats.get(split)}
    if trainer.get("max_steps", -1) <= 0:
        needed["task.stats.train"] = stats["train"]
    cost.missing = [name for name, value in needed.items() if value is None]
    if cost.missing:
        return cost
    source = min(stats["source_tokens"], task["max_source_length"], model["max_positions"])
    target = min(stats["target_tokens"], task["max_target_length"])
    if trainer.get("max_steps", -1) > 0:
        batch = trainer["per_device_train_batch_size"] * trainer.get("gradient_accumulation_steps", 1)
        examples = trainer["max_steps"] * batch
    else:
        examples = _capped(stats["train"], task.get("max_train_samples")) * trainer["num_train_epochs"]
    generated = min(max(stats["target_tokens"], generation["min_new_tokens"]), generation["max_new_tokens"])
    evaluated = _capped(stats[split], task.get("max_eval_samples"))
    cost.train_tokens = examples * (source + target)
    cost.eval_tokens = evaluated * (source + generated * generation["num_beams"])
    cost.train_flops = 6 * model["params"] * cost.train_tokens
    cost.eval_flops = 2 * model["params"] * cost.eval_tokens
    return cost


def _capped(count: int, cap: int | None) -> int:
    return count if cap is None else min(count, cap)


@dataclass(frozen=True)
class Efficiency:
    """Peak and MFU for one precision on one GPU, and where the MFU comes from."""

    peak_flops: float
    train_mfu: float
    generate_mfu: float
    source: str

    def gpu_hours(self, cost: RunCost) -> float:
        seconds = cost.train_flops / (self.train_mfu * self.peak_flops)
        return (seconds + cost.eval_flops / (self.generate_mfu * self.peak_flops)) / 3600


def measured_mfu(gpu: Gpu, results: Path = BENCH_RESULTS) -> tuple[float, float, str] | None:
    """Median training and generation MFU over the backbones that ``make bench-full`` timed on this GPU
    (bf16 autocast), by this module's formulas; None where no result for it is in ``results``."""
    train, generate, backbones, files = [], [], [], set()
    for path in sorted(results.glob("*/calibration_overhead.json")):
        record = json.loads(path.read_text())
        for result in record.get("results", []):
            device = result.get("device_name") or ""
            if not any(name in device for name in gpu.names) or "step_s" not in result:
                continue
            setting, params = result["setting"], result["params"]["backbone"]
            batch, source = setting["batch"], setting["source_length"]
            achieved = 6 * params * batch * (source + setting["target_length"]) / result["step_s"]["off"]["median"]
            train.append(achieved / (gpu.tensor_tflops * 1e12))
            tokens = batch * (source + setting["new_tokens"] * 4)  # the benchmark's beam search: 4 beams
            generate.append(2 * params * tokens / result["generate_s"]["off"]["median"] / (gpu.tensor_tflops * 1e12))
            backbones.append(setting["backbone"])
            files.add(str(path.relative_to(results.parent.parent) if results == BENCH_RESULTS else path))
    if not train:
        return None
    spread = f"training {min(train):.2f}-{max(train):.2f}, generation {min(generate):.4f}-{max(generate):.4f}"
    source = f"measured: median over {', '.join(backbones)} in {', '.join(sorted(files))}; {spread}"
    return statistics.median(train), statistics.median(generate), source


def efficiency(
    gpu: Gpu, precision: str, train_mfu: float | None = None, generate_mfu: float | None = None
) -> Efficiency:
    """The peak and MFUs for ``precision`` on ``gpu``: given ones first, then measured (bf16), then assumed."""
    peak = (gpu.tensor_tflops if precision == "bf16" else gpu.fp32_tflops) * 1e12
    measured = measured_mfu(gpu) if precision == "bf16" else None
    if measured:
        base_train, base_generate, source = measured
    else:
        base_train, base_generate = ASSUMED_MFU[precision, "train"], ASSUMED_MFU[precision, "generate"]
        source = f"assumed: nothing measured in {precision} on this GPU (repcali/plan.py, ASSUMED_MFU)"
    if train_mfu is not None or generate_mfu is not None:
        source = f"given on the command line; otherwise {source}"
    return Efficiency(peak, train_mfu or base_train, generate_mfu or base_generate, source)


def _number(value: float) -> str:
    for unit, size in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.2f}{unit}"
    return f"{value:.0f}"


def _hours(hours: float) -> str:
    return f"{hours:,.1f}" if hours >= 0.1 or hours == 0 else f"{hours:.2g}"


@dataclass
class Total:
    runs: int = 0
    train_tokens: float = 0.0
    eval_tokens: float = 0.0
    flops: float = 0.0
    gpu_hours: float = 0.0

    def add(self, cost: RunCost, hours: float) -> None:
        self.runs += 1
        self.train_tokens += cost.train_tokens
        self.eval_tokens += cost.eval_tokens
        self.flops += cost.train_flops + cost.eval_flops
        self.gpu_hours += hours

    def row(self, label: str, width: int) -> str:
        figures = (_number(self.train_tokens), _number(self.eval_tokens), _number(self.flops), _hours(self.gpu_hours))
        return f"{label:<{width}} {self.runs:>6} " + " ".join(f"{figure:>12}" for figure in figures)


def report(
    name: str,
    parts: dict[str, list],
    gpu_name: str = "h100",
    train_mfu: float | None = None,
    generate_mfu: float | None = None,
    by: str | None = None,
) -> str:
    """The plan of sweep ``name`` as text: ``parts`` maps each part to its grid points (:func:`repcali.grid.points`);
    ``by`` (``model`` or ``task``) adds subtotals."""
    gpu = GPUS[gpu_name]
    rows: dict[str, Total] = {}
    groups: dict[str, Total] = defaultdict(Total)
    total, seen, uncosted, longest = Total(), set(), defaultdict(set), (0.0, "")
    used: dict[str, Efficiency] = {}
    for part, points in parts.items():
        rows[part] = Total()
        for point in points:
            cost = run_cost(point.config)
            if cost.missing:
                uncosted[f"{cost.model} × {cost.task}"].update(cost.missing)
                continue
            used.setdefault(cost.precision, efficiency(gpu, cost.precision, train_mfu, generate_mfu))
            hours = used[cost.precision].gpu_hours(cost)
            rows[part].add(cost, hours)
            if point.run_dir not in seen:  # parts may share runs (the ablations' baseline): count each once
                seen.add(point.run_dir)
                total.add(cost, hours)
                if by:
                    groups[getattr(cost, by)].add(cost, hours)
                longest = max(longest, (hours, f"{cost.model} × {cost.task}"))
    width = max(len(label) for label in [*rows, *groups, "total (distinct runs)"])
    header = f"{'part':<{width}} {'runs':>6} " + " ".join(
        f"{title:>12}" for title in ("train tokens", "eval tokens", "FLOPs", "GPU-hours")
    )
    lines = [f"Sweep {name} on {gpu.name} GPUs (how it is estimated: repcali/plan.py):"]
    lines += [header, *(total_row.row(part, width) for part, total_row in rows.items())]
    lines.append(total.row("total (distinct runs)", width))
    if by:
        lines += ["", f"by {by}:", *(groups[key].row(key, width) for key in sorted(groups))]
    for precision, used_efficiency in sorted(used.items()):
        peak = used_efficiency.peak_flops / 1e12
        lines.append(
            f"{precision}: peak {peak:g} TFLOPS, MFU training {used_efficiency.train_mfu:.3f}, "
            f"generation {used_efficiency.generate_mfu:.4f} ({used_efficiency.source})"
        )
    if "fp32" in used:
        lines.append("fp32: the runs train in fp32 (trainer.bf16=false); trainer.bf16=true is a new run, much faster.")
    if longest[0]:
        lines.append(
            f"Longest run: {longest[1]}, {_hours(longest[0])} GPU-hours (cluster.time_min; longer runs requeue)."
        )
    for run, missing in sorted(uncosted.items()):
        lines.append(f"Not costed: {run} (no {', '.join(sorted(missing))} in its config).")
    return "\n".join(lines)
