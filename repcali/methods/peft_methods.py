"""PEFT methods: one class, parameterised by the PEFT config class whose fields are ``method.options``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from peft import PeftModel, PrefixTuningConfig, TaskType, get_peft_model
from torch import nn

from repcali.errors import RepCaliError, one_line
from repcali.methods.base import Method


class Peft(Method):
    """A PEFT method, saved in PEFT's own format; ``defaults`` are where PEFT's do not fit an encoder-decoder."""

    def __init__(self, name: str, config_class: type, label: str, **defaults: Any) -> None:
        self.name, self.options_class, self.label, self._defaults = name, config_class, label, defaults

    def defaults(self, backbone) -> dict[str, Any]:
        return {"task_type": TaskType.SEQ_2_SEQ_LM, **self._defaults}

    def apply(self, model: nn.Module, settings: Any) -> PeftModel:
        try:
            model = get_peft_model(model, settings)
        except (TypeError, ValueError) as error:  # e.g. target_modules that this backbone does not have
            raise RepCaliError(
                f"method={self.name}: {one_line(error)}. Fix: method.options.* must be valid fields of "
                f"peft.{self.options_class.__name__} for this backbone."
            ) from None
        return self.fixed(model)

    def fixed(self, model: PeftModel) -> PeftModel:
        """The model with whatever PEFT needs fixed for this method; as it is by default."""
        return model

    def save_weights(self, model: PeftModel, directory: Path) -> None:
        model.save_pretrained(directory)

    def load_weights(self, backbone: nn.Module, directory: Path, options: dict[str, Any]) -> PeftModel:
        return self.fixed(PeftModel.from_pretrained(backbone, directory))


class PrefixTuning(Peft):
    """Prefix-tuning (Li & Liang, 2021): on an encoder-decoder PEFT prepends the trained key/value prefix
    to the decoder's self-attention only, so the prefix is sized from the decoder."""

    def __init__(self) -> None:
        super().__init__("prefix", PrefixTuningConfig, "Prefix ({num_virtual_tokens})")

    def defaults(self, backbone) -> dict[str, Any]:
        # T5 keys are heads x d_kv wide, which is not d_model in T5-3B and T5-11B.
        layers = getattr(backbone, "num_decoder_layers", None) or getattr(backbone, "decoder_layers", None)
        heads = getattr(backbone, "decoder_attention_heads", None) or getattr(backbone, "num_heads", None)
        if layers is None or heads is None:
            return super().defaults(backbone)
        head_dim = getattr(backbone, "d_kv", None) or backbone.d_model // heads
        sizes = {"num_layers": layers, "num_attention_heads": heads, "token_dim": heads * head_dim}
        return {**super().defaults(backbone), **sizes}

    def fixed(self, model: PeftModel) -> PeftModel:
        """Put the prefix into ``generate``'s own cache, once. PEFT 0.21 passes it as ``past_key_values``,
        which transformers 5 ignores next to its ``cache`` (prefix-tuned models would generate as if
        untuned), and passes it again on every step, as ``is_first_iteration`` is unset after the first."""
        prepare = model.prepare_inputs_for_generation

        def prepare_with_prefix(*args, **kwargs):
            inputs = prepare(*args, **kwargs)
            prefix = inputs.pop("past_key_values", None)
            if prefix is None or not kwargs.get("is_first_iteration"):
                return inputs
            if inputs.get("cache") is None:
                inputs["cache"] = prefix
            else:  # the later steps read and extend this cache object, so the prefix must be in it
                for index, layer in enumerate(prefix.self_attention_cache.layers):
                    inputs["cache"].self_attention_cache.update(layer.keys, layer.values, index)
            return inputs

        model.prepare_inputs_for_generation = prepare_with_prefix
        return model
