"""Fine-tuning methods: which weights train, and what each one adds to the backbone.

    full     every backbone weight trains (the default)
    frozen   no backbone weight trains; with calib=on the RepCali block alone does
    lora, prefix, prompt, ia3
             PEFT; ``method.options`` are the fields of its config class
    adapter  Houlsby bottleneck adapters after each self-attention and feed-forward sublayer
    bitfit   bias terms only; a linear layer without one gets a zero bias (T5 has no biases at all)

:func:`apply_method` runs between loading the backbone and attaching RepCali, which then goes on the
Hugging Face model inside any PEFT wrapper (:func:`unwrap`), so every method composes with calib=on.
"""

from repcali.methods.base import (
    BACKBONE_DIR,
    METHOD_CONFIG_NAME,
    METHOD_WEIGHTS_NAME,
    Method,
    method_of,
    unwrap,
)
from repcali.methods.registry import METHODS, apply_method, check_combination, load_method, method_named, save_method

__all__ = [
    "BACKBONE_DIR",
    "METHODS",
    "METHOD_CONFIG_NAME",
    "METHOD_WEIGHTS_NAME",
    "Method",
    "apply_method",
    "check_combination",
    "load_method",
    "method_named",
    "method_of",
    "save_method",
    "unwrap",
]
