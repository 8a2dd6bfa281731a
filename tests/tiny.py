"""Tiny randomly initialised backbones, one per model family, saved to a folder like a hub checkpoint.

Each builder makes a config (d_model 32, 2+2 layers) and a tokenizer of the family's kind, trained
here in a fraction of a second on the shipped ACLSum text (and a few Chinese sentences) and loaded
back with ``from_pretrained`` from its standard file names (transformers v5 silently ignores the
old ``vocab_file=`` constructor arguments). ``build_tiny`` saves model and tokenizer with
``save_pretrained``; tests then load them through the same ``from_pretrained`` path users get.
"""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import torch
from tokenizers import BertWordPieceTokenizer, ByteLevelBPETokenizer
from transformers import (
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    BartConfig,
    BartTokenizer,
    BertConfig,
    BertTokenizer,
    EncoderDecoderConfig,
    LEDConfig,
    MBart50Tokenizer,
    MBartConfig,
    MT5Config,
    MvpConfig,
    PegasusConfig,
    PegasusTokenizer,
    PegasusXConfig,
    ProphetNetConfig,
    ProphetNetTokenizer,
    T5Config,
)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = PROJECT_ROOT / "tests" / "fixtures"
# the embedded tiny T5's builder: its corpus (ACLSum text) and its SentencePiece training, shared
_BUILD = runpy.run_path(str(PROJECT_ROOT / "assets" / "tiny-t5" / "build.py"))
corpus, train_sentencepiece = _BUILD["corpus"], _BUILD["train_sentencepiece"]
SMALL = {"d_model": 32, "encoder_layers": 2, "decoder_layers": 2, "encoder_attention_heads": 4}
SMALL |= {"decoder_attention_heads": 4, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64}


def _chinese_texts() -> list[str]:
    """Chinese text of the LCSTS and CSDS fixtures: enough characters for a char vocabulary."""
    texts = [
        json.loads(line)["text"] for name in ("train", "test") for line in (FIXTURES / f"lcsts/{name}.jsonl").open()
    ]
    for dialogue in json.loads((FIXTURES / "csds/train.json").read_text()):
        texts += [turn["utterance"] for turn in dialogue["Dialogue"]] + dialogue["FinalSumm"]
    return texts


def _bpe(directory: Path) -> BartTokenizer:
    """Byte-level BPE in BART's layout (vocab.json + merges.txt): BART, LED, MVP."""
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus(), vocab_size=1000, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    directory.mkdir(parents=True, exist_ok=True)
    bpe.save_model(str(directory))
    return BartTokenizer.from_pretrained(directory)


def _wordpiece_vocab(directory: Path, filename: str = "vocab.txt") -> Path:
    wordpiece = BertWordPieceTokenizer(lowercase=True)
    wordpiece.train_from_iterator(corpus(), vocab_size=1000)
    directory.mkdir(parents=True, exist_ok=True)
    wordpiece.save_model(str(directory))
    path = directory / filename
    (directory / "vocab.txt").rename(path)
    return path


def _bart(directory: Path):
    tokenizer = _bpe(directory)
    special = {"pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2, "decoder_start_token_id": 2}
    return BartConfig(
        vocab_size=len(tokenizer), max_position_embeddings=256, forced_eos_token_id=2, **SMALL, **special
    ), tokenizer


def _led(directory: Path):
    tokenizer = _bpe(directory)
    special = {"pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2, "decoder_start_token_id": 2}
    config = LEDConfig(
        vocab_size=len(tokenizer),
        max_encoder_position_embeddings=256,
        max_decoder_position_embeddings=256,
        attention_window=[16, 16],
        **SMALL,
        **special,
    )
    return config, tokenizer


def _mvp(directory: Path):
    tokenizer = _bpe(directory)
    special = {"pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2, "decoder_start_token_id": 2}
    return MvpConfig(vocab_size=len(tokenizer), max_position_embeddings=256, **SMALL, **special), tokenizer


def _t5_config(config_class=T5Config, **kwargs):
    tokenizer = AutoTokenizer.from_pretrained(PROJECT_ROOT / "assets" / "tiny-t5")
    config = config_class(
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
        **kwargs,
    )
    return config, tokenizer


def _t5(directory: Path):
    return _t5_config()


def _t5_v1_1(directory: Path):
    """T5 v1.1, Flan-T5, Mengzi-T5: gated-GELU feed-forward, untied input and output embeddings."""
    return _t5_config(feed_forward_proj="gated-gelu", tie_word_embeddings=False)


def _mt5(directory: Path):
    return _t5_config(MT5Config)


def _pegasus_tokenizer(directory: Path) -> PegasusTokenizer:
    # PEGASUS layout: pad 0, eos 1, unk 2, no bos (v5 rejects an spm with another layout)
    train_sentencepiece(directory, "spiece.model", 1000, pad_id=0, eos_id=1, unk_id=2, bos_id=-1)
    return PegasusTokenizer.from_pretrained(directory)


def _pegasus(directory: Path):
    tokenizer = _pegasus_tokenizer(directory)
    special = {"pad_token_id": 0, "eos_token_id": 1, "decoder_start_token_id": 0, "forced_eos_token_id": 1}
    return PegasusConfig(vocab_size=len(tokenizer), max_position_embeddings=256, **SMALL, **special), tokenizer


def _pegasus_x(directory: Path):
    tokenizer = _pegasus_tokenizer(directory)
    special = {"pad_token_id": 0, "eos_token_id": 1, "decoder_start_token_id": 0, "forced_eos_token_id": 1}
    config = PegasusXConfig(
        vocab_size=len(tokenizer), max_position_embeddings=256, block_size=16, num_global_tokens=4, **SMALL, **special
    )
    return config, tokenizer


def _prophetnet(directory: Path):
    _wordpiece_vocab(directory, "prophetnet.tokenizer")
    tokenizer = ProphetNetTokenizer.from_pretrained(directory)
    config = ProphetNetConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        num_encoder_layers=2,
        num_decoder_layers=2,
        num_encoder_attention_heads=4,
        num_decoder_attention_heads=4,
        max_position_embeddings=256,
        ngram=2,
        num_buckets=8,
        relative_max_distance=32,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.sep_token_id,
        bos_token_id=tokenizer.cls_token_id,
        decoder_start_token_id=tokenizer.sep_token_id,
    )
    return config, tokenizer


def _mbart(directory: Path):
    """mBART-50: SentencePiece plus the fairseq offset and the 52 language codes (en_XX, zh_CN, ...)."""
    train_sentencepiece(directory, "sentencepiece.bpe.model", 1000, pad_id=1, eos_id=2, unk_id=3, bos_id=0)
    tokenizer = MBart50Tokenizer.from_pretrained(directory, src_lang="en_XX", tgt_lang="en_XX")
    special = {"pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2, "decoder_start_token_id": 2}
    config = MBartConfig(
        vocab_size=len(tokenizer), max_position_embeddings=256, forced_eos_token_id=2, **SMALL, **special
    )
    return config, tokenizer


def _char_vocab(directory: Path) -> None:
    """BERT-style Chinese vocabulary: special tokens, then every character of the fixtures (and a-z, 0-9)."""
    chars = sorted(
        {c for text in _chinese_texts() for c in text if not c.isspace()} | set("abcdefghijklmnopqrstuvwxyz0123456789")
    )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars]) + "\n")


def _bart_chinese(directory: Path):
    """Chinese BART (fnlp): BART with a BertTokenizer over characters; decoding starts and ends at [SEP]."""
    _char_vocab(directory)
    tokenizer = BertTokenizer.from_pretrained(directory)
    special = {"pad_token_id": 0, "bos_token_id": 2, "eos_token_id": 3, "decoder_start_token_id": 3}
    config = BartConfig(
        vocab_size=len(tokenizer), max_position_embeddings=256, forced_eos_token_id=3, **SMALL, **special
    )
    return config, tokenizer


def _bert2bert(directory: Path):
    """A BERT encoder and a BERT decoder with cross-attention (the MiniLM warm start's architecture)."""
    _wordpiece_vocab(directory)
    tokenizer = BertTokenizer.from_pretrained(directory)
    sizes = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64}
    encoder = BertConfig(vocab_size=len(tokenizer), max_position_embeddings=256, **sizes)
    decoder = BertConfig(
        vocab_size=len(tokenizer), max_position_embeddings=256, is_decoder=True, add_cross_attention=True, **sizes
    )
    config = EncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    for key, value in {
        "decoder_start_token_id": tokenizer.cls_token_id,
        "eos_token_id": tokenizer.sep_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }.items():
        setattr(config, key, value)
    return config, tokenizer


BUILDERS = {
    "bart": _bart,
    "t5": _t5,
    "t5_v1_1": _t5_v1_1,
    "mt5": _mt5,
    "pegasus": _pegasus,
    "pegasus_x": _pegasus_x,
    "prophetnet": _prophetnet,
    "led": _led,
    "mvp": _mvp,
    "mbart": _mbart,
    "bart_chinese": _bart_chinese,
    "bert2bert": _bert2bert,
}


def build_tiny(family: str, directory: Path, seed: int = 0) -> str:
    """Write a tiny ``family`` model and its tokenizer to ``directory``; return the path."""
    directory = Path(directory)
    config, tokenizer = BUILDERS[family](directory)
    torch.manual_seed(seed)
    model = AutoModelForSeq2SeqLM.from_config(config)
    for key in ("decoder_start_token_id", "eos_token_id", "pad_token_id"):  # generate() reads these here
        if getattr(config, key, None) is not None:
            setattr(model.generation_config, key, getattr(config, key))
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return str(directory)
