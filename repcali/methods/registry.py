"""Every fine-tuning method by name, and what runs through them: apply, check, save, load.

Adding a method: a :class:`~repcali.methods.base.Method` (a module of its own, or one line here for
a PEFT method), its line in ``METHODS`` and ``conf/method/<name>.yaml`` (a test checks that the
registry and the files agree). ``train.py``, the parameter table and the GLUE grid pick it up.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from peft import IA3Config, LoraConfig, PromptTuningConfig
from torch import nn

from repcali.errors import RepCaliError
from repcali.methods.adapter import Adapter
from repcali.methods.base import METHOD_CONFIG_NAME, Method, method_of, plain
from repcali.methods.bitfit import BitFit
from repcali.methods.full import Frozen, Full
from repcali.methods.peft_methods import Peft, PrefixTuning

METHODS: dict[str, Method] = {
    method.name: method
    for method in (
        Full(),
        Frozen(),
        Peft("lora", LoraConfig, "LoRA (r={r})"),
        PrefixTuning(),
        # PEFT's seq2seq default (2) also allocates decoder prompts that its forward never uses.
        Peft("prompt", PromptTuningConfig, "Prompt ({num_virtual_tokens})", num_transformer_submodules=1),
        Peft("ia3", IA3Config, "(IA)³"),
        Adapter(),
        BitFit(),
    )
}


def method_named(name: str) -> Method:
    if name not in METHODS:
        raise RepCaliError(f"method={name!r} is unknown. Fix: use one of {', '.join(METHODS)} (conf/method/).")
    return METHODS[name]


def apply_method(model: nn.Module, name: str = "full", options: Mapping | None = None) -> nn.Module:
    """Prepare a freshly loaded backbone for ``name``; returns the model to train (a PeftModel for PEFT).

    The method is recorded on the returned model (:func:`method_of`), so that saving knows what to keep.
    """
    method = method_named(name)
    options = plain(options)
    model = method.apply(model, method.settings(options, model.config))
    model.repcali_method = {"name": method.name, "options": options}
    return model


def check_combination(method: str, calib_enabled: bool, calib_train: str) -> None:
    """Reject a method and calibration that cannot train as asked, before anything is loaded.

    ``calib.train=frozen`` freezes every weight but the block's, so it combines with ``full`` (the
    same as ``method=frozen calib=on``) and with ``frozen``, never with a method that adds weights.
    """
    adds_weights = method_named(method).adds_weights
    if calib_enabled and calib_train == "frozen" and adds_weights:
        raise RepCaliError(
            f"calib.train=frozen trains only the RepCali block, so method={method}'s own weights would stay "
            f"untrained. Fix: use calib.train=full for {method} + RepCali, or method=frozen calib=on for the "
            "block alone."
        )


def save_method(model: nn.Module, directory: Path, base_model: str | None, state_dict=None) -> None:
    """What the model's method trained, as that method saves it (the backbone too for ``full``); not the block.
    ``state_dict``: a sharded model's whole state, gathered (:mod:`repcali.sharding`)."""
    method_named(method_of(model)["name"]).save(model, directory, base_model, state_dict)


def load_method(directory: Path) -> nn.Module:
    """Rebuild what :func:`save_method` wrote; a folder without ``method_config.json`` is fully fine-tuned."""
    spec_file = directory / METHOD_CONFIG_NAME
    spec = json.loads(spec_file.read_text()) if spec_file.is_file() else {"name": "full"}
    return method_named(spec["name"]).load(directory, spec)
