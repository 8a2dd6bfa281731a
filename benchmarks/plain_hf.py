"""A minimal plain Hugging Face fine-tuning script: the baseline ``train.py`` is compared with.

What a user writes from the transformers summarization tutorial: read the JSON lines, tokenize
with truncation, pad per batch with ``DataCollatorForSeq2Seq``, train with ``Seq2SeqTrainer``.
Only what must match ``train.py`` for a fair comparison is set (model, data, templates, lengths,
batch size, learning rate, warm-up, weight decay, steps, seed, logging, no checkpoints); the rest
is Hugging Face's default. The Trainer's training metrics go to ``<output-dir>/train_results.json``.

    python benchmarks/plain_hf.py --model assets/tiny-t5 --train-file assets/aclsum/train.jsonl \
        --source "summarize: {aspect}: {document}" --target "{summary}" --max-steps 30 --output-dir /tmp/plain
"""

from __future__ import annotations

import argparse
import json

from datasets import load_dataset
from transformers import (
    AutoConfig,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    DataCollatorForSeq2Seq,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
    set_seed,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="folder with config.json and the tokenizer (random init)")
    parser.add_argument("--train-file", required=True)
    parser.add_argument("--source", required=True, help="str.format template over the columns, prefix included")
    parser.add_argument("--target", required=True)
    parser.add_argument("--max-source-length", type=int, default=128)
    parser.add_argument("--max-target-length", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--warmup-steps", type=float, default=0.06)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--logging-steps", type=int, default=10)
    parser.add_argument("--max-steps", type=int, required=True)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output-dir", required=True)
    args = parser.parse_args()

    set_seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForSeq2SeqLM.from_config(AutoConfig.from_pretrained(args.model))
    dataset = load_dataset("json", data_files={"train": args.train_file})["train"]

    def preprocess(batch: dict[str, list]) -> dict[str, list]:
        rows = [dict(zip(batch, values, strict=True)) for values in zip(*batch.values(), strict=True)]
        features = tokenizer(
            [args.source.format(**row) for row in rows], max_length=args.max_source_length, truncation=True
        )
        targets = [args.target.format(**row) for row in rows]
        features["labels"] = tokenizer(text_target=targets, max_length=args.max_target_length, truncation=True)[
            "input_ids"
        ]
        return features

    train = dataset.map(preprocess, batched=True, remove_columns=dataset.column_names)
    training_args = Seq2SeqTrainingArguments(
        output_dir=args.output_dir,
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        warmup_steps=args.warmup_steps,
        weight_decay=args.weight_decay,
        logging_steps=args.logging_steps,
        max_steps=args.max_steps,
        seed=args.seed,
        save_strategy="no",
        report_to="none",
    )
    trainer = Seq2SeqTrainer(
        model=model,
        args=training_args,
        train_dataset=train,
        data_collator=DataCollatorForSeq2Seq(tokenizer, model=model),
        processing_class=tokenizer,
    )
    metrics = trainer.train().metrics
    trainer.save_metrics("train", metrics)
    print(json.dumps(metrics))


if __name__ == "__main__":
    main()
