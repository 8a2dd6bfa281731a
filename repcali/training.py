"""The Hugging Face Trainer, set up for a run: arguments, generation, NaN guard, ordered predictions."""

from __future__ import annotations

import math
from collections.abc import Sequence
from copy import deepcopy
from dataclasses import fields
from difflib import get_close_matches
from pathlib import Path

import numpy as np
import transformers
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import SequentialSampler
from transformers import DataCollatorForSeq2Seq, GenerationConfig, Seq2SeqTrainingArguments, TrainerCallback

from repcali.errors import RepCaliError, one_line
from repcali.formatters import join_cjk


class Seq2SeqTrainer(transformers.Seq2SeqTrainer):
    """``Seq2SeqTrainer`` whose evaluation keeps dataset order on one process.

    With ``train_sampling_strategy=group_by_length`` the stock trainer also shuffles evaluation
    batches by length, so predictions could not be matched to raw references by position.
    (Distributed evaluation is already ordered: accelerate gathers shards in order.)
    """

    def _get_eval_sampler(self, eval_dataset):
        return SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None


class StopOnNaN(TrainerCallback):
    """Fail fast with a fix when the logged training loss stops being finite."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            raise RepCaliError(
                f"Training loss became {loss} at step {state.global_step}. "
                "Fix: lower trainer.learning_rate, set trainer.max_grad_norm, or use fp32/bf16 instead of fp16."
            )


def generation_config(model, settings: DictConfig) -> GenerationConfig:
    """The model's generation config (special tokens) with the task's decoding settings on top.

    Lengths go in as ``max_length``/``min_length`` = new tokens + the decoder start token, which is
    what ``max_new_tokens`` means for an encoder-decoder: ``Seq2SeqTrainer`` writes the default
    ``max_length=20`` into the model's config after its first batch, and ``generate`` would then
    warn on every later batch that both are set.
    """
    decoding = OmegaConf.to_container(settings, resolve=True)
    lengths = {"max_length": decoding.pop("max_new_tokens") + 1, "min_length": decoding.pop("min_new_tokens") + 1}
    config = deepcopy(model.generation_config)
    config.update(**decoding, **lengths)
    return config


# Set by the run itself (trainer.<field> would be silently replaced), and what sets it.
RUN_OWNED = {
    "output_dir": "runs_dir=<folder>",
    "seed": "seed=<n>",
    "report_to": "logger=wandb",
    "predict_with_generate": "task.generation.*",
    "generation_config": "task.generation.*",
}
# Values Seq2SeqTrainingArguments accepts but training cannot use: field -> the least that can work.
LEAST = {
    "per_device_train_batch_size": 1,
    "per_device_eval_batch_size": 1,
    "gradient_accumulation_steps": 1,
    "learning_rate": 0,
    "weight_decay": 0,
    "num_train_epochs": 0,
}


def training_arguments(
    cfg: DictConfig, run_dir: Path, generation: GenerationConfig | None = None, report_to: Sequence[str] = ()
) -> Seq2SeqTrainingArguments:
    """``cfg.trainer`` passes straight to ``Seq2SeqTrainingArguments``; run-owned fields are set here.

    A key that is no field, or a value that it or training cannot use, fails with one line.
    """
    kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    _check_keys(kwargs)
    kwargs.update(
        output_dir=str(run_dir / "checkpoints"),
        seed=cfg.seed,
        report_to=list(report_to),
        predict_with_generate=True,
        generation_config=generation,
    )
    try:
        args = Seq2SeqTrainingArguments(**kwargs)
    except (TypeError, ValueError) as error:
        raise RepCaliError(
            f"Bad trainer option: {one_line(error)}. Fix: correct the trainer.* value it names."
        ) from None
    _check_values(args)
    return args


def _check_keys(trainer: dict) -> None:
    known = {field.name for field in fields(Seq2SeqTrainingArguments) if field.init}
    for key in trainer:
        if key in RUN_OWNED:
            raise RepCaliError(f"trainer.{key} is set by the run. Fix: remove it; set {RUN_OWNED[key]} instead.")
        if key not in known:
            close = "".join(f"trainer.{name}, or " for name in get_close_matches(key, known, n=1))
            raise RepCaliError(
                f"trainer.{key} is not a Seq2SeqTrainingArguments field. Fix: use {close}a field listed in the "
                "transformers documentation of Seq2SeqTrainingArguments."
            )


def _check_values(args: Seq2SeqTrainingArguments) -> None:
    for key, least in LEAST.items():
        value = getattr(args, key)
        if not isinstance(value, int | float) or not math.isfinite(value) or value < least:
            raise RepCaliError(f"trainer.{key}={value!r} cannot train. Fix: use a number >= {least}.")
    if args.max_steps <= 0 and args.num_train_epochs == 0:
        raise RepCaliError(
            "trainer.num_train_epochs=0 with no trainer.max_steps trains nothing. Fix: set either above 0 "
            "(method=frozen calib=off evaluates the backbone untrained)."
        )


def build_trainer(cfg: DictConfig, model, tokenizer, data, run_dir: Path, report_to: list[str]) -> Seq2SeqTrainer:
    args = training_arguments(cfg, run_dir, generation_config(model, cfg.task.generation), report_to)
    return Seq2SeqTrainer(
        model=model,
        args=args,
        train_dataset=data.train,
        data_collator=DataCollatorForSeq2Seq(
            tokenizer, model=model, pad_to_multiple_of=8 if args.fp16 or args.bf16 else None
        ),
        processing_class=tokenizer,
        callbacks=[StopOnNaN()],
    )


def predict(trainer: Seq2SeqTrainer, dataset, tokenizer, language: str = "en") -> list[str]:
    """Batched generation over ``dataset`` in its order, decoded to text.

    Chinese output loses the spaces that BERT-style tokenizers put between characters when decoding.
    """
    output = trainer.predict(dataset, metric_key_prefix="eval")
    token_ids = np.where(output.predictions < 0, tokenizer.pad_token_id, output.predictions)
    texts = [text.strip() for text in tokenizer.batch_decode(token_ids, skip_special_tokens=True)]
    return [join_cjk(text) for text in texts] if language == "zh" else texts
