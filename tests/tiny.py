"""Tiny randomly initialised backbones (d_model 32, 2+2 layers), saved to a folder like a hub checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import ByteLevelBPETokenizer
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, BartConfig, BartTokenizer, T5Config

PROJECT_ROOT = Path(__file__).resolve().parents[1]
ACLSUM_TRAIN = PROJECT_ROOT / "assets" / "aclsum" / "train.jsonl"


def _texts() -> list[str]:
    rows = [json.loads(line) for line in ACLSUM_TRAIN.open()]
    return [row["document"] for row in rows[::3]] + [row["summary"] for row in rows]


def _bart(directory: Path):
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(_texts(), vocab_size=1000, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    directory.mkdir(parents=True, exist_ok=True)
    bpe.save_model(str(directory))
    tokenizer = BartTokenizer.from_pretrained(directory)
    config = BartConfig(
        vocab_size=len(tokenizer),
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=256,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=2,
        forced_eos_token_id=2,
    )
    return config, tokenizer


def _t5(directory: Path):
    tokenizer = AutoTokenizer.from_pretrained(PROJECT_ROOT / "assets" / "tiny-t5")
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    return config, tokenizer


BUILDERS = {"bart": _bart, "t5": _t5}


def build_tiny(family: str, directory: Path, seed: int = 0) -> str:
    """Write a tiny ``family`` model and its tokenizer to ``directory``; return the path."""
    directory = Path(directory)
    config, tokenizer = BUILDERS[family](directory)
    torch.manual_seed(seed)
    model = AutoModelForSeq2SeqLM.from_config(config)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return str(directory)
