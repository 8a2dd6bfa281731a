"""A run's arithmetic precision: one closed choice, ``precision``, resolved on the machine that runs the run.

- ``fp32``: weights, optimizer and every matmul in IEEE fp32 (TF32 explicitly off). The reference; on a GPU
  the slowest (H100: 67 TFLOPS of plain fp32 against 989 of bf16 tensor cores, dense).
- ``tf32``: fp32 weights, optimizer and activations; matmuls on TF32 tensor cores (inputs rounded to a
  10-bit mantissa, fp32 accumulation). Ampere or newer.
- ``bf16``: bf16 autocast (matmuls and most activations in bfloat16) with fp32 master weights and optimizer
  (the Trainer's ``bf16=True``). Ampere or newer.
- ``auto`` (default): bf16 on a CUDA GPU with bf16 tensor cores, fp32 elsewhere (CPU, Apple MPS, and
  pre-Ampere GPUs such as the V100 or T4: TF32 arrived with Ampere too, and fp16 is not offered).

Why bf16 is the GPU default: it is the fastest precision whose numerics the field accepts for fine-tuning
these backbones. T5 was trained with bfloat16 activations (Raffel et al. 2020, on TPUs; "All of our
experiments use bfloat16 activations", C. Raffel in google-research/text-to-text-transfer-transformer#539),
so bf16 is its native regime. BART's own fine-tuning recipe is 16-bit mixed precision too (fairseq's
examples/bart/README.summarization.md: ``--fp16`` on 8 V100s, which have no bf16). bf16 has fp32's exponent
range, so it needs no loss scaling and does not overflow, at 8 significant bits against fp16's 11; mixed
precision keeps fp32 master weights and optimizer states, so small updates are not lost either way.

Why not fp16: T5 overflows in it. Its feed-forward activations exceed fp16's largest value (65,504) and the
loss turns NaN (huggingface/transformers#4586, #5651, #10956, #11461, #23918), a consequence of bf16
pre-training; no fp16 path here would be trustworthy for every backbone.

The requested precision (``auto`` included) is part of a run's identity, so a login node without a GPU and
a compute node compute the same run directories; the resolved one is recorded in ``results.json``
(``precision``), tables never pool runs of different resolved precision, and a run whose checkpoint was
trained in another precision than this machine would use is not resumed here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from repcali.errors import RepCaliError

CHOICES = ("auto", "fp32", "tf32", "bf16")  # what ``precision=`` takes (repcali.config.Precision)
RESOLVED = ("fp32", "tf32", "bf16")  # what a run trains in, fastest last


@dataclass(frozen=True)
class Device:
    """What a machine can compute in: ``bf16`` and ``tf32`` tensor cores (not emulated)."""

    name: str
    cuda: bool
    bf16: bool
    tf32: bool


def this_device(use_cpu: bool = False) -> Device:
    """This process's device as the Trainer will use it (``use_cpu``: the CPU even where CUDA is available)."""
    import torch

    if use_cpu or not torch.cuda.is_available():
        mps = not use_cpu and torch.backends.mps.is_available()
        return Device("Apple MPS" if mps else "CPU", cuda=False, bf16=False, tf32=False)
    from transformers.utils import is_torch_tf32_available

    bf16 = torch.cuda.is_bf16_supported(including_emulation=False)  # emulated bf16 (V100) is slower than fp32
    return Device(torch.cuda.get_device_name(), cuda=True, bf16=bf16, tf32=is_torch_tf32_available())


def resolve(requested: str, device: Device) -> str:
    """What ``precision=requested`` trains in on ``device``; bf16 or tf32 where it cannot run is refused."""
    if requested not in CHOICES:
        raise RepCaliError(f"precision={requested!r} is unknown. Fix: use one of {', '.join(CHOICES)}.")
    if requested == "auto":
        return "bf16" if device.bf16 else "fp32"
    if requested == "fp32" or getattr(device, requested):
        return requested
    here = "there is no CUDA GPU here" if not device.cuda else f"{device.name} has none"
    raise RepCaliError(
        f"precision={requested} needs {requested} tensor cores (a CUDA GPU of the Ampere generation or newer); "
        f"{here}. Fix: precision=fp32 (or precision=auto: {resolve('auto', device)} here), or run it on such a GPU."
    )


def run_precision(cfg: Any) -> str:
    """The precision the run ``cfg`` trains in on this machine (its trainer's ``use_cpu`` respected)."""
    return resolve(str(cfg.precision), this_device(bool(cfg.trainer.get("use_cpu", False))))


def trainer_arguments(resolved: str) -> dict[str, bool]:
    """The Seq2SeqTrainingArguments that make a run compute in ``resolved`` (TF32: :func:`use_tf32`)."""
    return {"bf16": resolved == "bf16", "fp16": False}


def use_tf32(resolved: str) -> None:
    """TF32 for CUDA matmuls and convolutions on for ``tf32``, off (IEEE fp32) otherwise; nothing without CUDA.

    Set here each time rather than through the Trainer's ``tf32`` argument: transformers applies that through an
    ``lru_cache``d function, once per process and value, so in one process (Hydra's basic launcher runs a sweep's
    jobs in one) an fp32 run after a tf32 run would keep TF32 on."""
    import torch

    if not torch.cuda.is_available():
        return
    mode = "tf32" if resolved == "tf32" else "ieee"
    if hasattr(torch.backends, "fp32_precision"):  # torch >= 2.9; the legacy flags below may not be mixed with it
        torch.backends.fp32_precision = mode
    else:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = mode == "tf32"


def legacy(trainer: Mapping) -> str:
    """What a run recorded before ``precision`` existed trained in: what its trainer flags made it."""
    for key in ("bf16", "fp16", "tf32"):
        if trainer.get(key):
            return key
    return "fp32"


def recorded(config: Mapping, resolved: str | None) -> str:
    """The precision a ``results.json`` says its run trained in: its resolved ``precision``; for a record
    written before precision was recorded, what its config made it (an explicit choice, or its trainer flags)."""
    if resolved:
        return resolved
    requested = config.get("precision")
    if requested is None:
        return legacy(config.get("trainer") or {})
    return requested if requested != "auto" else "auto (not recorded)"


def check_resume(previous_config: Mapping, previous_precision: str | None, resolved: str, run_dir: Any) -> None:
    """A checkpoint trained in one precision is not resumed in another (``auto`` on other hardware)."""
    before = recorded(previous_config, previous_precision)
    if before == resolved:
        return
    redo = "precision=auto resolves to bf16 on a CUDA GPU of the Ampere generation or newer, to fp32 elsewhere"
    raise RepCaliError(
        f"The checkpoint in {run_dir} was trained in {before}; this machine would resume it in {resolved} "
        f"({redo}). Fix: resume it on a machine where it resolves to {before}, or delete {run_dir}/checkpoints "
        f"to train it again from step 0 in {resolved}."
    )


def refuse_other_precision(cfg: Any, run_dir: Any) -> None:
    """Refuse to resume ``run_dir``'s checkpoint where it would continue in another precision than it began in."""
    from repcali.checkpoints import latest_checkpoint
    from repcali.results import InvalidResults, read_results

    try:
        previous = read_results(run_dir)
    except InvalidResults:
        return  # set aside by the run, which then trains from its checkpoint as a new record
    if previous is None or latest_checkpoint(run_dir) is None:
        return
    if previous.status == "completed" and cfg.rerun:
        return  # a rerun of a completed run starts from step 0 (its checkpoints are deleted)
    check_resume(previous.config, previous.precision, run_precision(cfg), run_dir)
