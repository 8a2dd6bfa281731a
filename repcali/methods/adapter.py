"""Houlsby bottleneck adapters (Houlsby et al., 2019) after each self-attention and feed-forward sublayer.

PEFT has no bottleneck adapter and the ``adapters`` package pins transformers 4.x, so the adapter is
a small module here, attached with forward hooks like the calibration block.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers.activations import ACT2FN

from repcali.errors import RepCaliError
from repcali.methods.base import Method

# Houlsby et al. (2019) put an adapter after the attention and the feed-forward sublayer of every block.
ADAPTER_TARGETS = {
    "t5": ["SelfAttention", "DenseReluDense"],
    "mt5": ["SelfAttention", "DenseReluDense"],
    **{family: ["self_attn", "fc2"] for family in ("bart", "mbart", "pegasus", "marian")},
}


@dataclass
class AdapterOptions:
    """``bottleneck``: the adapter's hidden size; ``targets``: module names to follow (default per model type)."""

    bottleneck: int = 64
    activation: str = "relu"
    targets: list[str] | None = None

    def __post_init__(self) -> None:
        if self.bottleneck < 1:
            raise ValueError(f"bottleneck={self.bottleneck} must be at least 1")
        if self.activation not in ACT2FN:
            raise ValueError(f"activation={self.activation!r} is not one of {', '.join(ACT2FN)}")


class BottleneckAdapter(nn.Module):
    """``h + up(act(down(h)))`` on a sublayer's output; ``up`` starts at zero, so a new adapter is the identity."""

    def __init__(self, d_model: int, options: AdapterOptions) -> None:
        super().__init__()
        self.down = nn.Linear(d_model, options.bottleneck)
        self.act = ACT2FN[options.activation]
        self.up = nn.Linear(options.bottleneck, d_model)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.up(self.act(self.down(h)))


def _adapt_output(adapter: BottleneckAdapter):
    def hook(module: nn.Module, args: tuple, output):
        if isinstance(output, tuple):  # attention modules return (states, weights, ...)
            return (adapter(output[0]), *output[1:])
        return adapter(output)

    return hook


class Adapter(Method):
    """Only the adapters train; each is a submodule of its sublayer, applied to its output by a hook."""

    name = "adapter"
    options_class = AdapterOptions
    label = "Adapter (b={bottleneck})"

    def apply(self, model: nn.Module, settings: AdapterOptions) -> nn.Module:
        targets = settings.targets or ADAPTER_TARGETS.get(model.config.model_type)
        sites = [module for name, module in model.named_modules() if targets and name.rpartition(".")[2] in targets]
        if not sites:
            raise RepCaliError(
                f"method=adapter found no sublayer named {targets} in {model.config.model_type!r}. "
                "Fix: set method.options.targets to the names of its attention and feed-forward modules."
            )
        model.requires_grad_(False)
        reference = next(model.parameters())
        for module in sites:
            adapter = BottleneckAdapter(model.config.hidden_size, settings).to(reference.device, reference.dtype)
            module.bottleneck_adapter = adapter
            module.register_forward_hook(_adapt_output(adapter))
        return model
