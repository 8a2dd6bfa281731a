"""Fine-tuning methods: which weights train, and what each one adds to the backbone.

    full     every backbone weight trains (the default)
    frozen   no backbone weight trains; with calib=on the RepCali block alone does, with calib=off
             nothing does and the backbone is evaluated as loaded (a zero-shot reference)
    lora, prefix, prompt, ia3
             PEFT; ``method.options`` are the fields of its config class
    adapter  Houlsby bottleneck adapters after each self-attention and feed-forward sublayer
    bitfit   bias terms only; a linear layer without one gets a zero bias (T5 has no biases at all)

:func:`apply_method` runs between loading the backbone and attaching RepCali, which then goes on the
Hugging Face model inside any PEFT wrapper (:func:`unwrap`), so every method composes with calib=on.
PEFT has no bottleneck adapter and the ``adapters`` package pins transformers 4.x, so the adapter is a
small module here, attached with forward hooks like the calibration block.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import peft
import torch
from omegaconf import DictConfig, OmegaConf
from peft import PeftModel, TaskType, get_peft_model
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModelForSeq2SeqLM
from transformers.activations import ACT2FN

from repcali.calibration import find_block
from repcali.errors import RepCaliError

# PEFT's config class per method; ``method.options`` are its fields.
PEFT_CONFIGS = {
    "lora": "LoraConfig",
    "prefix": "PrefixTuningConfig",
    "prompt": "PromptTuningConfig",
    "ia3": "IA3Config",
}
METHODS = ("full", "frozen", *PEFT_CONFIGS, "adapter", "bitfit")
# Houlsby et al. (2019) put an adapter after the attention and the feed-forward sublayer of every block.
ADAPTER_TARGETS = {
    "t5": ["SelfAttention", "DenseReluDense"],
    "mt5": ["SelfAttention", "DenseReluDense"],
    **{family: ["self_attn", "fc2"] for family in ("bart", "mbart", "pegasus", "marian")},
}
METHOD_CONFIG_NAME = "method_config.json"
METHOD_WEIGHTS_NAME = "method.safetensors"
BACKBONE_DIR = "backbone"


@dataclass
class AdapterOptions:
    """``bottleneck``: the adapter's hidden size; ``targets``: module names to follow (default per model type)."""

    bottleneck: int = 64
    activation: str = "relu"
    targets: list[str] | None = None


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


def _check_known(method: str) -> None:
    if method not in METHODS:
        raise RepCaliError(f"method={method!r} is unknown. Fix: use one of {METHODS} (conf/method/).")


def check_combination(method: str, calib_enabled: bool, calib_train: str) -> None:
    """Reject a method and calibration that cannot train as asked, before anything is loaded.

    ``calib.train=frozen`` freezes every weight but the block's, so it combines with ``full`` (the
    same as ``method=frozen calib=on``) and with ``frozen``, never with a method that adds weights.
    """
    _check_known(method)
    if calib_enabled and calib_train == "frozen" and method not in ("full", "frozen"):
        raise RepCaliError(
            f"calib.train=frozen trains only the RepCali block, so method={method}'s own weights would stay "
            f"untrained. Fix: use calib.train=full for {method} + RepCali, or method=frozen calib=on for the "
            "block alone."
        )


def unwrap(model: nn.Module) -> nn.Module:
    """The Hugging Face model inside a PEFT wrapper (RepCali attaches there); any other model as it is."""
    return model.get_base_model() if isinstance(model, PeftModel) else model


def method_of(model: nn.Module) -> dict[str, Any]:
    """The ``{"name", "options"}`` that :func:`apply_method` recorded; a plain model is fully fine-tuned."""
    return getattr(model, "repcali_method", {"name": "full", "options": {}})


def apply_method(model: nn.Module, name: str = "full", options: Mapping | None = None) -> nn.Module:
    """Prepare a freshly loaded backbone for ``name``; returns the model to train (a PeftModel for PEFT).

    The method is recorded on the returned model (:func:`method_of`), so that saving knows what to keep.
    """
    _check_known(name)
    options = OmegaConf.to_container(options, resolve=True) if isinstance(options, DictConfig) else dict(options or {})
    if name in PEFT_CONFIGS:
        model = _peft(model, name, options)
    elif name == "adapter":
        _add_adapters(model, options)
    elif options:
        raise RepCaliError(f"method={name} takes no options, got {options}. Fix: remove the method.options overrides.")
    elif name == "frozen":
        model.requires_grad_(False)
    elif name == "bitfit":
        _train_biases_only(model)
    model.repcali_method = {"name": name, "options": options}
    return model


def _peft(model: nn.Module, name: str, options: dict[str, Any]) -> PeftModel:
    config_class = getattr(peft, PEFT_CONFIGS[name])
    try:
        config = config_class(task_type=TaskType.SEQ_2_SEQ_LM, **{**_peft_defaults(name, model.config), **options})
        model = get_peft_model(model, config)
    except (TypeError, ValueError) as error:
        raise RepCaliError(
            f"method={name}: {error}. Fix: method.options.* must be valid fields of peft.{config_class.__name__}."
        ) from None
    return _prefix_reaches_generate(model) if name == "prefix" else model


def _prefix_reaches_generate(model: PeftModel) -> PeftModel:
    """Put the prefix into ``generate``'s own cache, once. PEFT 0.21 passes it as ``past_key_values``, which
    transformers 5 ignores next to its ``cache`` (prefix-tuned models would generate as if untuned), and
    passes it again on every step, as ``is_first_iteration`` is unset after the first."""
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


def _peft_defaults(name: str, config) -> dict[str, Any]:
    """Where PEFT's seq2seq defaults do not fit an encoder-decoder, say so explicitly."""
    if name == "prompt":
        # PEFT's seq2seq default (2) also allocates decoder prompts that its forward never uses.
        return {"num_transformer_submodules": 1}
    if name == "prefix":
        # PEFT feeds the prefix to the decoder's self-attention only: size it from the decoder. T5 keys are
        # heads x d_kv wide, which is not d_model in T5-3B and T5-11B.
        layers = getattr(config, "num_decoder_layers", None) or getattr(config, "decoder_layers", None)
        heads = getattr(config, "decoder_attention_heads", None) or getattr(config, "num_heads", None)
        if layers is None or heads is None:
            return {}
        head_dim = getattr(config, "d_kv", None) or config.d_model // heads
        return {"num_layers": layers, "num_attention_heads": heads, "token_dim": heads * head_dim}
    return {}


def _add_adapters(model: nn.Module, options: dict[str, Any]) -> None:
    try:
        settings = AdapterOptions(**options)
    except TypeError as error:
        raise RepCaliError(
            f"method=adapter: {error}. Fix: use method.options.{{bottleneck,activation,targets}}."
        ) from None
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


def _train_biases_only(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.Linear) and module.bias is None:
            weight = module.weight
            module.bias = nn.Parameter(torch.zeros(module.out_features, device=weight.device, dtype=weight.dtype))
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name.rpartition(".")[2] == "bias")


def save_method(model: nn.Module, directory: Path, base_model: str | None) -> None:
    """What the method trains (PEFT's own format for PEFT methods) and its config; not the block."""
    if isinstance(model, PeftModel):
        model.save_pretrained(directory)
    else:
        tensors = _method_tensors(model)
        if tensors:
            save_file({k: v.detach().contiguous() for k, v in tensors.items()}, directory / METHOD_WEIGHTS_NAME)
    spec = {**method_of(model), "base_model": base_model}
    (directory / METHOD_CONFIG_NAME).write_text(json.dumps(spec, indent=2) + "\n")


def load_method(directory: Path) -> nn.Module:
    """Rebuild what :func:`save_method` wrote: the backbone, the method, and the weights it trained."""
    spec = json.loads((directory / METHOD_CONFIG_NAME).read_text())
    model = AutoModelForSeq2SeqLM.from_pretrained(spec["base_model"] or directory / BACKBONE_DIR)
    if spec["name"] in PEFT_CONFIGS:
        model = PeftModel.from_pretrained(model, directory)
        model = _prefix_reaches_generate(model) if spec["name"] == "prefix" else model
        model.repcali_method = {"name": spec["name"], "options": spec["options"]}
        return model.eval()
    model = apply_method(model, spec["name"], spec["options"])
    expected = set(_method_tensors(model))
    saved = load_file(directory / METHOD_WEIGHTS_NAME) if expected else {}
    if set(saved) != expected:
        raise RepCaliError(
            f"The weights in {directory} do not match method={spec['name']} with {spec['options']} (differing: "
            f"{sorted(set(saved) ^ expected)[:3]}). Fix: load it with the repcali version that saved it."
        )
    model.load_state_dict(saved, strict=False)
    return model.eval()


def _method_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The parameters the method trains, by name: everything that requires grad except the RepCali block."""
    block = find_block(model)
    in_block = {id(p) for p in block.parameters()} if block is not None else set()
    return {n: p for n, p in model.named_parameters() if p.requires_grad and id(p) not in in_block}


def backbone_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The backbone's own tensors under their usual names, without what a method or RepCali added."""
    base = unwrap(model)
    with torch.device("meta"):
        vanilla = set(AutoModelForSeq2SeqLM.from_config(base.config).state_dict())
    state = {k.replace(".base_layer", ""): v for k, v in base.state_dict().items()}  # PEFT wraps layers
    return {k: v for k, v in state.items() if k in vanilla}
