"""Sharded training (``trainer=fsdp``, ``trainer=zero3``) and what the RepCali block needs under it.

FSDP and DeepSpeed ZeRO-3 split every parameter across the run's processes, so the block a process
holds is a shard of it. Two places see that, and are handled here:

- Generation. FSDP2 gathers a unit's parameters when that unit's forward runs. ``generate`` calls the
  encoder directly, outside the root unit's forward, so the root unit's parameters (the embeddings,
  the RepCali block) are still sharded there and the embedding lookup fails (seen with FSDP2 on CPU).
  :func:`unsharded` gathers them around a prediction step (the Trainer does this for FSDP1 only).
- Saving. :func:`gathered_state_dict` gathers the whole model's state on every process (a collective),
  and the first process writes it: the backbone and ``repcali.safetensors`` hold whole tensors.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from omegaconf import DictConfig


def engine(trainer: DictConfig | dict) -> str | None:
    """``fsdp`` or ``deepspeed`` when the trainer config shards the model, else None (one process or DDP)."""
    if trainer.get("fsdp"):
        return "fsdp"
    if trainer.get("deepspeed"):
        return "deepspeed"
    return None


@contextmanager
def unsharded(model: torch.nn.Module):
    """An FSDP2 root module's own parameters gathered for the duration; anything else as it is."""
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # torch < 2.6: no FSDP2 through the Trainer either
        FSDPModule = ()  # noqa: N806
    if not isinstance(model, FSDPModule):
        yield
        return
    model.unshard()
    try:
        yield
    finally:
        model.reshard()


def full_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A model's whole state, gathered from every process (call it on each): on the first, full tensors on
    the CPU; on the others, an empty dict. Works for FSDP1, FSDP2, DDP and plain modules (torch's API)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def gathered_state_dict(trainer) -> dict[str, torch.Tensor] | None:
    """The trained model's whole state under FSDP or ZeRO-3 (every process must call this), else None."""
    if trainer.is_deepspeed_enabled:  # needs stage3_gather_16bit_weights_on_model_save (conf/trainer/zero3.yaml)
        return trainer.accelerator.get_state_dict(trainer.model_wrapped)
    if trainer.is_fsdp_enabled:
        return full_state_dict(trainer.model)
    return None
