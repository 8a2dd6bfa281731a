"""Backbones in and out: load through ``from_pretrained``, count parameters, save and reload runs (any method)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig
from torch import nn
from transformers import AutoConfig, AutoModelForSeq2SeqLM, AutoTokenizer, PreTrainedModel

from repcali.calibration import CONFIG_NAME, backbone_state_dict, find_block, load_repcali, save_repcali
from repcali.config import PROJECT_ROOT
from repcali.errors import RepCaliError
from repcali.methods import (
    BACKBONE_DIR,
    METHOD_CONFIG_NAME,
    backbone_tensors,
    load_method,
    method_of,
    save_method,
    unwrap,
)


def _local_or_hub(name_or_path: str) -> str:
    """A folder relative to the project root if one exists there, else the string as given (a hub id)."""
    local = PROJECT_ROOT / name_or_path
    return str(local) if not Path(name_or_path).is_absolute() and local.is_dir() else name_or_path


def load_backbone(model_cfg: DictConfig) -> tuple[PreTrainedModel, object]:
    """Model and tokenizer by hub id or local folder; ``init=scratch`` builds random weights from the config."""
    source = _local_or_hub(model_cfg.name_or_path)
    try:
        config = AutoConfig.from_pretrained(source)
        tokenizer = AutoTokenizer.from_pretrained(_local_or_hub(model_cfg.tokenizer or model_cfg.name_or_path))
    except OSError as error:
        raise RepCaliError(
            f"Could not load model {model_cfg.name_or_path!r} ({error.__class__.__name__}: {str(error)[:200]}). "
            "Fix: check the hub id and the network (HF_HUB_OFFLINE=1 forbids downloads), "
            "or point model.name_or_path at a local folder saved with save_pretrained."
        ) from error
    if not config.is_encoder_decoder:
        raise RepCaliError(
            f"Model {model_cfg.name_or_path!r} ({config.model_type}) is not an encoder-decoder; RepCali calibrates "
            "the encoder output that the decoder reads. Fix: choose an encoder-decoder backbone (conf/model/)."
        )
    if model_cfg.init == "scratch":
        model = AutoModelForSeq2SeqLM.from_config(config)
    elif model_cfg.init == "pretrained":
        model = AutoModelForSeq2SeqLM.from_pretrained(source)
    else:
        raise RepCaliError(f"model.init={model_cfg.init!r} is unknown. Fix: use 'pretrained' or 'scratch'.")
    return model, tokenizer


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Parameters counted once each (tied embeddings are one tensor)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def parameter_report(model: nn.Module, backbone_total: int) -> dict[str, float]:
    """Total, trainable and added parameters; added % is relative to the backbone, as in the paper.

    ``added`` is what the method and RepCali add together; ``repcali`` is the block's share of it.
    """
    total = count_parameters(model)
    trainable = count_parameters(model, trainable_only=True)
    added = total - backbone_total
    block = find_block(model)
    return {
        "total": total,
        "trainable": trainable,
        "trainable_pct": 100 * trainable / total,
        "added": added,
        "added_pct": 100 * added / backbone_total,
        "backbone": backbone_total,
        "repcali": count_parameters(block) if block is not None else 0,
    }


def save_model(model: nn.Module, tokenizer, directory: str | Path, base_model: str | None = None) -> None:
    """Save a run's model so that :func:`load_model` reproduces its outputs, and the RepCali block beside it.

    Full fine-tuning saves the backbone in the usual Hugging Face format. Any other method saves only
    what it trains (PEFT's own format for PEFT methods) and its config, with ``base_model`` (hub id or
    folder) to reload the backbone from; ``None`` saves the backbone's own tensors too, in ``backbone/``.
    """
    directory = Path(directory)
    if method_of(model)["name"] == "full":
        model.save_pretrained(directory, state_dict=backbone_state_dict(model))
    else:
        directory.mkdir(parents=True, exist_ok=True)
        save_method(model, directory, base_model)
        if base_model is None:
            unwrap(model).save_pretrained(directory / BACKBONE_DIR, state_dict=backbone_tensors(model))
    tokenizer.save_pretrained(directory)
    if find_block(model) is not None:
        save_repcali(model, directory)


def load_model(directory: str | Path) -> nn.Module:
    """Reload what :func:`save_model` wrote: backbone and method, re-calibrated if it was saved with RepCali."""
    directory = Path(directory)
    if (directory / METHOD_CONFIG_NAME).is_file():
        model = load_method(directory)
    else:
        model = AutoModelForSeq2SeqLM.from_pretrained(directory)
    if (directory / CONFIG_NAME).is_file():
        load_repcali(unwrap(model), directory)
    return model
