"""BitFit (Ben Zaken et al., 2022): only bias terms train."""

from __future__ import annotations

import torch
from torch import nn

from repcali.methods.base import Method, NoOptions


class BitFit(Method):
    """A linear layer without a bias gets a zero one, counted as added: T5 has no biases at all,
    BART lacks only ``lm_head``'s."""

    name = "bitfit"
    label = "BitFit"

    def apply(self, model: nn.Module, settings: NoOptions) -> nn.Module:
        for module in model.modules():
            if isinstance(module, nn.Linear) and module.bias is None:
                weight = module.weight
                module.bias = nn.Parameter(torch.zeros(module.out_features, device=weight.device, dtype=weight.dtype))
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(name.rpartition(".")[2] == "bias")
        return model
