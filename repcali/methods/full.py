"""The backbone's own weights: all of them train (``full``, the default) or none (``frozen``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn
from transformers import AutoModelForSeq2SeqLM

from repcali.calibration import backbone_state_dict
from repcali.methods.base import Method, NoOptions


class Full(Method):
    """Every backbone weight trains. Saved as Hugging Face saves a model (loadable without repcali),
    with no ``method_config.json``: a folder without one holds a fully fine-tuned backbone."""

    name = "full"
    adds_weights = False

    def apply(self, model: nn.Module, settings: NoOptions) -> nn.Module:
        return model

    def save(self, model: nn.Module, directory: Path, base_model: str | None, state_dict=None) -> None:
        model.save_pretrained(directory, state_dict=backbone_state_dict(model, state_dict))

    def load(self, directory: Path, spec: dict[str, Any]) -> nn.Module:
        return AutoModelForSeq2SeqLM.from_pretrained(directory)


class Frozen(Method):
    """No backbone weight trains: with calib=on the RepCali block alone does, with calib=off nothing
    does and the backbone is evaluated as loaded (a zero-shot reference)."""

    name = "frozen"
    adds_weights = False

    def apply(self, model: nn.Module, settings: NoOptions) -> nn.Module:
        return model.requires_grad_(False)
