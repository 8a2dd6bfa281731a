"""RepCali: representation calibration in the latent space of encoder-decoder PLMs.

The whole method (arXiv 2505.08463), between the encoder and the decoder:

    Shape Seed  s = 1  (batch × n, all ones)
    LearnEmb    d = Embedding(s)                       (calibration values d_i)
    Calibrate   p = LayerNorm(h + λ·d)                 (h: encoder output)
    Decode      ŷ = Decoder(y_<t, p)

The block is attached with a forward hook on ``model.get_encoder()``. Hugging Face models call
that encoder once per ``forward`` and once per ``generate`` (beam search expands the *returned*
states), so training, greedy and beam generation and ``Seq2SeqTrainer`` all see ``p``, and the
model's own code and checkpoint keys stay as they are. Without the block the model is vanilla.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from repcali.config import RepCaliConfig
from repcali.errors import RepCaliError

WEIGHTS_NAME = "repcali.safetensors"
CONFIG_NAME = "repcali_config.json"


class CalibrationBlock(nn.Module):
    """Shape Seed → LearnEmb → LayerNorm placement, applied to encoder states ``h``."""

    def __init__(self, d_model: int, config: RepCaliConfig) -> None:
        super().__init__()
        self.config = config
        self.learn_emb = nn.Embedding(config.num_embeddings, d_model)
        self.norm = nn.LayerNorm(d_model) if config.layernorm != "none" else None

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        shape_seed = torch.ones(h.shape[:2], dtype=torch.long, device=h.device)
        d = self.learn_emb(shape_seed).to(h.dtype)
        lam = self.config.lam
        if self.config.layernorm == "post_add":
            return self.norm(h + lam * d)
        if self.config.layernorm == "on_delta":
            return h + lam * self.norm(d)
        return h + lam * d


def _calibrate_output(block: CalibrationBlock):
    def hook(module: nn.Module, args: tuple, output):
        if isinstance(output, tuple):  # return_dict=False
            return (block(output[0]), *output[1:])
        output["last_hidden_state"] = block(output["last_hidden_state"])
        return output

    return hook


def _encoder_of(model: nn.Module) -> nn.Module:
    config = getattr(model, "config", None)
    if not getattr(config, "is_encoder_decoder", False) or not hasattr(model, "get_encoder"):
        name = getattr(config, "model_type", type(model).__name__)
        raise RepCaliError(
            f"RepCali needs an encoder-decoder model, but {name!r} is not one. "
            "Fix: pick an encoder-decoder backbone (BART, T5, PEGASUS, ...; see conf/model/)."
        )
    return model.get_encoder()


def _d_model(model: nn.Module) -> int:
    # EncoderDecoderModel (e.g. bert2bert) keeps the encoder's config apart; its width is the memory's.
    return getattr(model.config, "encoder", model.config).hidden_size


def _max_source_positions(model: nn.Module) -> int:
    """The backbone's maximum source length; T5 has none in its config (relative positions): 512."""
    config = getattr(model.config, "encoder", model.config)
    for key in ("max_position_embeddings", "n_positions", "max_source_positions"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 1:
            return value
    return 512


def find_block(model: nn.Module) -> CalibrationBlock | None:
    """The attached block, found structurally (not by parameter-name prefix)."""
    return next((m for m in model.modules() if isinstance(m, CalibrationBlock)), None)


def attach_repcali(model: nn.Module, config: RepCaliConfig | None = None) -> CalibrationBlock:
    """Attach RepCali to any Hugging Face encoder-decoder and return the block.

    The block becomes the submodule ``model.repcali`` (so optimizers, DDP and ``.to()`` see it)
    and a forward hook on the encoder calibrates its output. With ``train="frozen"`` every other
    parameter stops requiring gradients.
    """
    config = config or RepCaliConfig()
    encoder = _encoder_of(model)
    if find_block(model) is not None:
        raise RepCaliError(
            "RepCali is already attached to this model. Fix: attach it once (detach_repcali removes it)."
        )
    if config.num_embeddings is None:
        config = replace(config, num_embeddings=_max_source_positions(model))
    reference = next(encoder.parameters())
    block = CalibrationBlock(_d_model(model), config).to(device=reference.device, dtype=reference.dtype)
    model.repcali = block
    block.hook_handle = encoder.register_forward_hook(_calibrate_output(block))
    if config.train == "frozen":
        for parameter in model.parameters():
            parameter.requires_grad = False
        for parameter in block.parameters():
            parameter.requires_grad = True
    return block


def detach_repcali(model: nn.Module) -> None:
    """Remove the hook and the block: the model is vanilla again."""
    block = find_block(model)
    if block is None:
        return
    block.hook_handle.remove()
    for name, module in list(model.named_modules()):
        if module is block:
            parent = model.get_submodule(name.rpartition(".")[0])
            delattr(parent, name.rpartition(".")[2])
            return


def save_repcali(model: nn.Module, directory: str | Path, state_dict: dict[str, torch.Tensor] | None = None) -> None:
    """Write the block's weights and config beside a backbone checkpoint.

    ``state_dict``: the whole model's, gathered by a sharding engine (:mod:`repcali.sharding`) when the
    block's own tensors are one process's shard; the block's entries are taken from it.
    """
    block = find_block(model)
    if block is None:
        raise RepCaliError(
            "No RepCali block is attached to this model. Fix: attach_repcali first, or save with save_pretrained."
        )
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if state_dict is None:
        tensors = block.state_dict()
    else:
        prefix = _prefix(model, block)
        tensors = {k.removeprefix(prefix): v for k, v in state_dict.items() if k.startswith(prefix)}
    save_file({k: v.contiguous() for k, v in tensors.items()}, directory / WEIGHTS_NAME)
    (directory / CONFIG_NAME).write_text(json.dumps(asdict(block.config), indent=2) + "\n")


def load_repcali(model: nn.Module, directory: str | Path) -> CalibrationBlock:
    """Attach a block saved by :func:`save_repcali` and load its weights exactly."""
    directory = Path(directory)
    if not (directory / CONFIG_NAME).is_file():
        raise RepCaliError(
            f"No {CONFIG_NAME} in {directory}. Fix: load it as a plain model; it was saved without RepCali."
        )
    config = RepCaliConfig(**json.loads((directory / CONFIG_NAME).read_text()))
    block = attach_repcali(model, config)
    block.load_state_dict(load_file(directory / WEIGHTS_NAME, device=str(next(block.parameters()).device)))
    return block


def _prefix(model: nn.Module, block: CalibrationBlock) -> str:
    return next(name for name, module in model.named_modules() if module is block) + "."


def backbone_state_dict(
    model: nn.Module, state_dict: dict[str, torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """The model's state dict without the block: exactly the vanilla checkpoint's keys.

    ``state_dict``: the whole model's, gathered by a sharding engine, instead of the model's own.
    """
    state = model.state_dict() if state_dict is None else state_dict
    block = find_block(model)
    if block is None:
        return state
    prefix = _prefix(model, block)
    return {k: v for k, v in state.items() if not k.startswith(prefix)}
