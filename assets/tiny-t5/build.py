"""Rebuild the embedded default backbone: a tiny T5 config and its SentencePiece tokenizer.

No weights ship: ``model.init=scratch`` initialises them from this config with the run's seed.
The 2,000-piece unigram vocabulary (T5's layout: pad=0, eos=1, unk=2, plus 100 sentinels) is
learned from ACLSum's training split. T5's pre-LayerNorm blocks and relative attention learn to
read the source from scratch within a few hundred steps; a BART of the same size does not.

    python assets/tiny-t5/build.py
"""

import json
from pathlib import Path

import sentencepiece as spm
from transformers import T5Config, T5Tokenizer

HERE = Path(__file__).parent


def corpus() -> list[str]:
    """ACLSum's training split: every third document and every summary (the tests' tiny tokenizers too)."""
    rows = [json.loads(line) for line in (HERE.parent / "aclsum" / "train.jsonl").read_text().splitlines()]
    return [row["document"] for row in rows[::3]] + [row["summary"] for row in rows]


def train_sentencepiece(directory: Path, filename: str, vocab_size: int, texts: list[str] | None = None, **layout):
    """A unigram SentencePiece model learned from ``texts`` (default: :func:`corpus`), written as
    ``directory/filename``; ``layout``: SentencePiece's trainer options (special token ids...)."""
    directory.mkdir(parents=True, exist_ok=True)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts or corpus()),
        model_prefix=str(directory / "spm"),
        vocab_size=vocab_size,
        character_coverage=1.0,
        minloglevel=2,
        **layout,
    )
    (directory / "spm.model").replace(directory / filename)
    (directory / "spm.vocab").unlink()


def main() -> None:
    train_sentencepiece(HERE, "spiece.model", 2000, model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1)
    tokenizer = T5Tokenizer.from_pretrained(HERE)
    tokenizer.save_pretrained(HERE)
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=64,
        d_kv=16,
        d_ff=256,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=False,
        dropout_rate=0.1,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    config.save_pretrained(HERE)
    print(f"vocab {len(tokenizer)}: {tokenizer.tokenize('They propose a new method.')}")


if __name__ == "__main__":
    main()
