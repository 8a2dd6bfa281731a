"""What a sweep will cost, before anything is submitted: runs, tokens, FLOPs and GPU-hours, per part, in total,
and in each precision the GPU offers.

    python -m repcali.sweeps plan main_table                     # on an H100, the sweep as configured
    python -m repcali.sweeps plan main_table --gpu a100 --by model precision=fp32

Per run, from its composed config (the sweep's cached grid points, :mod:`repcali.grid`):

- training tokens = training examples × epochs × (source + target tokens), each length the task's mean
  (``task.stats``) cut at the run's limits (``task.max_*_length``, ``model.max_positions``); with
  ``trainer.max_steps`` set, examples = steps × per-device batch × accumulation (one process);
- evaluation tokens = evaluated examples × (source + generated tokens × beams), generated tokens being
  the mean target length within the task's ``min/max_new_tokens``;
- FLOPs = 6·N·training tokens + 2·N·evaluation tokens (N = ``model.params``; Kaplan et al., 2020);
- precision: the run's ``precision`` as the named GPU resolves it (:mod:`repcali.precision`: ``auto`` is bf16
  where the GPU has bf16 tensor cores, else fp32); a precision the GPU cannot run is not costed;
- GPU-hours = FLOPs / (MFU × the GPU's dense peak in that precision), training and generation each with
  its own MFU: measured by ``make bench-full`` on that GPU where a result is in ``benchmarks/results/``
  (bf16 autocast, same formulas on the calibration benchmark's step and generate times), otherwise the
  stated assumption (:data:`ASSUMED_MFU`). Every sweep is also priced in fp32, TF32 and bf16, to show what
  its precision costs.

What the approximation leaves out: attention's FLOPs (they grow with length²), padding, that encoder
tokens pass only the encoder's weights and decoder tokens only the decoder's (6·N·tokens counts every
weight for every token; an MFU measured with the same formula absorbs this for similar shapes), the
cheaper backward of parameter-efficient methods, evaluation during training, loading, and queueing.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repcali.config import PROJECT_ROOT
from repcali.errors import RepCaliError
from repcali.precision import RESOLVED, Device, resolve

BENCH_RESULTS = PROJECT_ROOT / "benchmarks" / "results"


@dataclass(frozen=True)
class Gpu:
    """A GPU's dense peaks (TFLOPS, without 2:4 structured sparsity) from its vendor datasheet, per precision.

    ``fp32``: plain fp32 (CUDA cores): what fp32 matmuls use with TF32 off. ``tf32``, ``bf16``: tensor cores
    (bf16: bf16 inputs, fp32 accumulation); None where the GPU has none (before Ampere).
    """

    name: str
    fp32: float
    tf32: float | None
    bf16: float | None
    names: tuple[str, ...]  # how torch.cuda.get_device_name reports it (whole words), to find measurements

    def peak(self, precision: str) -> float | None:
        """TFLOPS in ``precision`` (fp32, tf32 or bf16), None where the GPU cannot compute in it."""
        return getattr(self, precision)

    @property
    def device(self) -> Device:
        """The GPU as :func:`repcali.precision.resolve` sees a machine."""
        return Device(self.name, cuda=True, bf16=self.bf16 is not None, tf32=self.tf32 is not None)


# NVIDIA datasheets. Datasheets print tensor-core figures "with sparsity" (marked *); dense is half of that,
# and is what these are. "Specifications 1/2 lower without sparsity" (H100 datasheet).
GPUS = {
    # V100 datasheet: FP32 15.7 (SXM2); its tensor cores are fp16 only (125): no TF32, no bf16.
    "v100": Gpu("NVIDIA V100 SXM2", 15.7, None, None, ("V100",)),
    "a10": Gpu("NVIDIA A10", 31.2, 62.5, 125, ("A10",)),  # A10: TF32 62.5 | 125*, BF16 125 | 250*
    "l4": Gpu("NVIDIA L4", 30.3, 60, 121, ("L4",)),  # L4 lists only sparse: TF32 120*, BF16 242*
    "l40s": Gpu("NVIDIA L40S", 91.6, 183, 362.05, ("L40S",)),  # L40S: TF32 183 | 366*, BF16 362.05 | 733*
    "a100": Gpu("NVIDIA A100 SXM4", 19.5, 156, 312, ("A100",)),  # A100: TF32 156 | 312*, BF16 312 | 624*
    # H100 (SXM5 | PCIe): FP32 67 | 51, TF32 989* | 756*, BF16 1,979* | 1,513*; H200 SXM: as the H100 SXM.
    "h100": Gpu("NVIDIA H100 SXM5", 67, 494.7, 989.4, ("H100 80GB HBM3", "H100 SXM")),
    "h100_pcie": Gpu("NVIDIA H100 PCIe", 51, 378, 756.5, ("H100 PCIe",)),
    "h200": Gpu("NVIDIA H200 SXM", 67, 494.7, 989.4, ("H200",)),
}
# Assumed where nothing is measured; the figures a reader should question first.
ASSUMED_MFU = {
    # bf16: about what make bench-full measured on an H100 (training 0.13-0.28, generation 0.006-0.011 for
    # BART/T5 base and large, by the formulas above); the 0.35-0.45 often quoted for bf16 fine-tuning is for
    # larger models and batches than these.
    ("bf16", "train"): 0.2,
    ("bf16", "generate"): 0.01,
    # TF32: half bf16's peak and twice its activation bytes; a step taking ~1.5-2x the bf16 one would be about
    # the same fraction of that (halved) peak. Not measured.
    ("tf32", "train"): 0.2,
    ("tf32", "generate"): 0.01,
    # fp32 on plain CUDA cores is easier to keep busy, but nothing here measured it.
    ("fp32", "train"): 0.5,
    ("fp32", "generate"): 0.1,
}


@dataclass
class RunCost:
    """One run's tokens and FLOPs; ``missing`` names the figures its config lacks (then it is not costed)."""

    model: str
    task: str
    requested: str  # the run's precision setting: auto, fp32, tf32 or bf16 (repcali/precision.py)
    train_tokens: float = 0.0
    eval_tokens: float = 0.0
    train_flops: float = 0.0
    eval_flops: float = 0.0
    missing: list[str] = field(default_factory=list)


def run_cost(config: dict[str, Any]) -> RunCost:
    """The tokens and FLOPs of the run a resolved config describes (a grid point's ``config``)."""
    model, task, trainer = config["model"], config["task"], config["trainer"]
    stats, generation = task["stats"], task["generation"]
    cost = RunCost(model["name"], task["name"], str(config.get("precision") or "auto"))
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


def _named(device: str, gpu: Gpu) -> bool:
    """Whether torch's device name is this GPU: whole words, so that an A10 is not an A100, an L4 not an L40S."""
    return any(re.search(rf"\b{re.escape(name)}\b", device) for name in gpu.names)


def measured_mfu(gpu: Gpu, results: Path = BENCH_RESULTS) -> tuple[float, float, str] | None:
    """Median training and generation MFU over the backbones that ``make bench-full`` timed on this GPU
    in bf16 autocast, by this module's formulas; None where no such result is in ``results``."""
    train, generate, backbones, files = [], [], [], set()
    peak = gpu.bf16 * 1e12 if gpu.bf16 else None
    for path in sorted(results.glob("*/calibration_overhead.json")):
        record = json.loads(path.read_text())
        for result in record.get("results", []):
            device = result.get("device_name") or ""
            if peak is None or not _named(device, gpu) or "step_s" not in result:
                continue
            if not str(result.get("dtype", "bf16")).startswith("bf16"):
                continue  # another precision's timing: not this peak's
            setting, params = result["setting"], result["params"]["backbone"]
            batch, source = setting["batch"], setting["source_length"]
            achieved = 6 * params * batch * (source + setting["target_length"]) / result["step_s"]["off"]["median"]
            train.append(achieved / peak)
            tokens = batch * (source + setting["new_tokens"] * 4)  # the benchmark's beam search: 4 beams
            generate.append(2 * params * tokens / result["generate_s"]["off"]["median"] / peak)
            backbones.append(setting["backbone"])
            files.add(str(path.relative_to(results.parent.parent) if results == BENCH_RESULTS else path))
    if not train:
        return None
    spread = f"training {min(train):.2f}-{max(train):.2f}, generation {min(generate):.4f}-{max(generate):.4f}"
    source = f"measured: median over {', '.join(backbones)} in {', '.join(sorted(files))}; {spread}"
    return statistics.median(train), statistics.median(generate), source


def efficiency(
    gpu: Gpu, precision: str, train_mfu: float | None = None, generate_mfu: float | None = None
) -> Efficiency | None:
    """The peak and MFUs for ``precision`` on ``gpu``: given ones first, then measured (bf16), then assumed;
    None where the GPU has no such tensor cores."""
    peak = gpu.peak(precision)
    if peak is None:
        return None
    measured = measured_mfu(gpu) if precision == "bf16" else None
    if measured:
        base_train, base_generate, source = measured
    else:
        base_train, base_generate = ASSUMED_MFU[precision, "train"], ASSUMED_MFU[precision, "generate"]
        source = f"assumed: nothing measured in {precision} on this GPU (repcali/plan.py, ASSUMED_MFU)"
        if precision != "fp32":  # tensor cores compute what fp32 does, faster: never assumed slower than fp32
            fp32 = efficiency(gpu, "fp32")
            base_train = max(base_train, fp32.train_mfu * fp32.peak_flops / (peak * 1e12))
            base_generate = max(base_generate, fp32.generate_mfu * fp32.peak_flops / (peak * 1e12))
    if train_mfu is not None or generate_mfu is not None:
        source = f"given on the command line; otherwise {source}"
    return Efficiency(peak * 1e12, train_mfu or base_train, generate_mfu or base_generate, source)


def resolved_on(gpu: Gpu, requested: str) -> tuple[str | None, str]:
    """What a run asking for ``requested`` computes in on ``gpu``, or (None, why it would be refused)."""
    try:
        return resolve(requested, gpu.device), ""
    except RepCaliError as refusal:
        return None, str(refusal).split(" Fix:")[0]


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


@dataclass
class Pricing:
    """A GPU's efficiencies: each precision's, with MFUs given on the command line applied to ``given_for``."""

    gpu: Gpu
    train_mfu: float | None = None
    generate_mfu: float | None = None
    given_for: set[str] = field(default_factory=set)  # the precisions a sweep runs in
    _cache: dict[str, Efficiency | None] = field(default_factory=dict)

    def of(self, precision: str) -> Efficiency | None:
        if precision not in self._cache:
            given = precision in self.given_for
            mfus = (self.train_mfu, self.generate_mfu) if given else (None, None)
            self._cache[precision] = efficiency(self.gpu, precision, *mfus)
        return self._cache[precision]

    def hours(self, cost: RunCost, precision: str) -> float:
        return self.of(precision).gpu_hours(cost)


def report(
    name: str,
    parts: dict[str, list],
    gpu_name: str = "h100",
    train_mfu: float | None = None,
    generate_mfu: float | None = None,
    by: str | None = None,
) -> str:
    """The plan of sweep ``name`` as text: ``parts`` maps each part to its grid points (:func:`repcali.grid.points`);
    ``by`` (``model`` or ``task``) adds subtotals. Hours are in the precision each run resolves to on the GPU,
    then the whole sweep in every precision; MFUs given here apply to the sweep's own precision."""
    gpu = GPUS[gpu_name]
    costed: list[tuple[str, Any, RunCost, str]] = []  # part, point, cost, resolved precision
    every_run: dict[Any, RunCost] = {}  # each distinct run with its figures, whether this GPU can run it or not
    uncosted: dict[str, set[str]] = defaultdict(set)
    refused: dict[str, set[str]] = defaultdict(set)
    for part, points in parts.items():
        for point in points:
            cost = run_cost(point.config)
            precision, why = resolved_on(gpu, cost.requested)
            if cost.missing:
                uncosted[f"{cost.model} × {cost.task}"].update(cost.missing)
                continue
            every_run.setdefault(point.run_dir, cost)
            if precision is None:
                refused[why].add(f"{cost.model} × {cost.task}")
            else:
                costed.append((part, point, cost, precision))
    pricing = Pricing(gpu, train_mfu, generate_mfu, {precision for *_, precision in costed})
    rows: dict[str, Total] = {part: Total() for part in parts}
    groups: dict[str, Total] = defaultdict(Total)
    total, longest, seen = Total(), (0.0, ""), set()
    every = {
        each: sum(pricing.hours(cost, each) for cost in every_run.values()) if pricing.of(each) else math.nan
        for each in RESOLVED
    }  # the whole sweep in each precision
    for part, point, cost, precision in costed:
        hours = pricing.hours(cost, precision)
        rows[part].add(cost, hours)
        if point.run_dir in seen:  # parts may share runs (the ablations' baseline): count each once
            continue
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
    lines += ["", *precision_table(gpu, pricing, every, len(every_run)), *sweep_precision(costed)]
    if longest[0]:
        lines.append(
            f"Longest run: {longest[1]}, {_hours(longest[0])} GPU-hours (cluster.time_min; longer runs requeue)."
        )
    for why, runs in sorted(refused.items()):
        lines.append(
            f"Not in the first table ({len(runs)} backbone × task): {why.rstrip('.')}; precision=fp32 on the "
            "command line prices them as this GPU can run them."
        )
    for run, missing in sorted(uncosted.items()):
        lines.append(f"Not costed: {run} (no {', '.join(sorted(missing))} in its config).")
    return "\n".join(lines)


def precision_table(gpu: Gpu, pricing: Pricing, every: dict[str, float], runs: int) -> list[str]:
    """The whole sweep's GPU-hours in fp32, TF32 and bf16 on ``gpu``, with each peak and MFU and its source."""
    lines = [f"The {runs} runs in each precision on {gpu.name} (dense datasheet peaks; MFU measured or assumed):"]
    lines.append(f"{'precision':<10} {'peak TFLOPS':>11} {'MFU train':>9} {'generate':>8} {'GPU-hours':>10}  MFU from")
    for precision in RESOLVED:
        used = pricing.of(precision)
        if used is None:
            blank = f"{'—':>11} {'':>9} {'':>8} {'—':>10}"
            lines.append(f"{precision:<10} {blank}  no {precision} tensor cores on this GPU")
            continue
        peak = f"{used.peak_flops / 1e12:g}"
        figures = f"{peak:>11} {used.train_mfu:>9.3f} {used.generate_mfu:>8.4f} {_hours(every[precision]):>10}"
        lines.append(f"{precision:<10} {figures}  {used.source}")
    return lines


def sweep_precision(costed: list) -> list[str]:
    """Which precision the sweep's runs compute in on this GPU, and what they ask for (each run counted once)."""
    asked, seen = Counter(), set()
    for _, point, cost, precision in costed:
        if point.run_dir not in seen:
            seen.add(point.run_dir)
            asked[cost.requested, precision] += 1
    if not asked:
        return []
    said = "; ".join(
        f"precision={requested}: {count} run{'s' * (count != 1)}" + (f", {got} here" if requested == "auto" else "")
        for (requested, got), count in sorted(asked.items())
    )
    chosen = " and ".join(sorted({precision for _, precision in asked}))
    return [f"The sweep's runs compute in {chosen} on this GPU ({said}): the GPU-hours of the first table."]
