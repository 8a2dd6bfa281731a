"""What a fine-tuning method is: a name, typed options, what it does to a backbone, how it is saved.

A method is one :class:`Method` in the registry (:mod:`repcali.methods.registry`) and one
``conf/method/<name>.yaml``. The defaults here fit a method that marks some weights trainable
(adding them if it must): it saves those weights, and reloads by applying itself again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from peft import PeftModel
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModelForSeq2SeqLM

from repcali.calibration import find_block
from repcali.errors import RepCaliError, one_line
from repcali.validate import closest

METHOD_CONFIG_NAME = "method_config.json"
METHOD_WEIGHTS_NAME = "method.safetensors"
BACKBONE_DIR = "backbone"


@dataclass
class NoOptions:
    """The options of a method that takes none."""


class Method:
    """One fine-tuning method; a subclass sets the class attributes and :meth:`apply`.

    - ``name``: ``method=<name>``, the file ``conf/method/<name>.yaml`` and the run directory's level.
    - ``options_class``: a dataclass; ``method.options.*`` are its fields, checked before anything loads.
    - ``adds_weights``: it trains weights of its own, which ``calib.train=frozen`` (the block alone)
      would leave untrained; ``full`` and ``frozen`` do not.
    - ``label``: its column in the parameter table, formatted with its options (``LoRA (r={r})``).
    """

    name: str
    options_class: type = NoOptions
    adds_weights: bool = True
    label: str = ""

    def settings(self, options: Mapping | None = None, backbone=None) -> Any:
        """``method.options`` as an ``options_class`` instance, with the defaults that depend on the
        ``backbone``'s config when one is given. An unknown option or a bad value fails with a fix."""
        given = plain(options)
        known = [field.name for field in fields(self.options_class) if field.init]
        if unknown := sorted(set(given) - set(known)):
            raise RepCaliError(
                f"method.options.{unknown[0]} is not an option of method={self.name}. Fix: "
                f"{self._use(known, closest(unknown[0], known))}."
            )
        try:
            return self.options_class(**{**self.defaults(backbone), **given})
        except (TypeError, ValueError) as error:
            raise RepCaliError(
                f"method={self.name}: {one_line(error)}. Fix: correct that value in method.options."
            ) from None

    def _use(self, known: list[str], near: str | None = None) -> str:
        if near:
            return f"use method.options.{near}, or {self._use(known).removeprefix('use ')}"
        if not known:
            return f"remove the method.options overrides; method={self.name} takes none"
        if len(known) > 6:
            return f"use fields of {self.options_class.__module__.partition('.')[0]}.{self.options_class.__name__}"
        return "use " + ", ".join(f"method.options.{name}" for name in known)

    def defaults(self, backbone) -> dict[str, Any]:
        """Options that differ from the options class's defaults (``backbone``: its config, or None)."""
        return {}

    def apply(self, model: nn.Module, settings: Any) -> nn.Module:
        """Prepare a freshly loaded backbone: make trainable what the method trains; return the model to train."""
        raise NotImplementedError

    def trained(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The parameters the method trains, by name: everything that requires grad except the RepCali block."""
        block = find_block(model)
        in_block = {id(p) for p in block.parameters()} if block is not None else set()
        return {n: p for n, p in model.named_parameters() if p.requires_grad and id(p) not in in_block}

    def save(self, model: nn.Module, directory: Path, base_model: str | None, state_dict=None) -> None:
        """What the method trained, and ``method_config.json`` naming it, its options and the backbone to
        reload: ``base_model`` (hub id or folder), or when None the backbone's own tensors, in ``backbone/``.
        ``state_dict`` (a sharded model's, gathered) is taken by ``full`` only, the one method sharded."""
        if state_dict is not None:
            raise RepCaliError(f"method={self.name} cannot be saved from a sharded model. Fix: method=full.")
        self.save_weights(model, directory)
        # the backbone's dtype: a hub checkpoint may store another (facebook/bart-large: float16), and reloading
        # it as stored would not reproduce the trained model
        dtype = str(unwrap(model).dtype).removeprefix("torch.")
        spec = {**method_of(model), "base_model": base_model, "dtype": dtype}
        (directory / METHOD_CONFIG_NAME).write_text(json.dumps(spec, indent=2) + "\n")
        if base_model is None:
            unwrap(model).save_pretrained(directory / BACKBONE_DIR, state_dict=backbone_tensors(model))

    def save_weights(self, model: nn.Module, directory: Path) -> None:
        if tensors := self.trained(model):
            save_file({k: v.detach().contiguous() for k, v in tensors.items()}, directory / METHOD_WEIGHTS_NAME)

    def load(self, directory: Path, spec: dict[str, Any]) -> nn.Module:
        """Rebuild what :meth:`save` wrote (``spec``: its ``method_config.json``)."""
        dtype = getattr(torch, spec.get("dtype", "float32"))  # saved before the key existed: float32 (model.dtype)
        backbone = AutoModelForSeq2SeqLM.from_pretrained(spec["base_model"] or directory / BACKBONE_DIR, dtype=dtype)
        model = self.load_weights(backbone, directory, spec["options"])
        model.repcali_method = {"name": self.name, "options": spec["options"]}
        return model.eval()

    def load_weights(self, backbone: nn.Module, directory: Path, options: dict[str, Any]) -> nn.Module:
        model = self.apply(backbone, self.settings(options, backbone.config))
        expected = set(self.trained(model))
        saved = load_file(directory / METHOD_WEIGHTS_NAME) if expected else {}
        if set(saved) != expected:
            raise RepCaliError(
                f"The weights in {directory} do not match method={self.name} with {options} (differing: "
                f"{sorted(set(saved) ^ expected)[:3]}). Fix: load it with the repcali version that saved it."
            )
        model.load_state_dict(saved, strict=False)
        return model


def plain(options: Mapping | None) -> dict[str, Any]:
    """``method.options`` as a plain dict, whether it comes from the config or from Python."""
    return OmegaConf.to_container(options, resolve=True) if OmegaConf.is_config(options) else dict(options or {})


def unwrap(model: nn.Module) -> nn.Module:
    """The Hugging Face model inside a PEFT wrapper (RepCali attaches there); any other model as it is."""
    return model.get_base_model() if isinstance(model, PeftModel) else model


def method_of(model: nn.Module) -> dict[str, Any]:
    """The ``{"name", "options"}`` that ``apply_method`` recorded; a plain model is fully fine-tuned."""
    return getattr(model, "repcali_method", {"name": "full", "options": {}})


def backbone_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The backbone's own tensors under their usual names, without what a method or RepCali added."""
    base = unwrap(model)
    with torch.device("meta"):
        vanilla = set(AutoModelForSeq2SeqLM.from_config(base.config).state_dict())
    state = {k.replace(".base_layer", ""): v for k, v in base.state_dict().items()}  # PEFT wraps layers
    return {k: v for k, v in state.items() if k in vanilla}
