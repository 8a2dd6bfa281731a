"""The Hugging Face Trainer, set up for a run: arguments, generation, loss guard, checkpoints, ordered predictions."""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Sequence
from copy import deepcopy
from pathlib import Path

import numpy as np
import torch
import transformers
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import SequentialSampler
from transformers import (
    DataCollatorForSeq2Seq,
    EarlyStoppingCallback,
    GenerationConfig,
    PrinterCallback,
    Seq2SeqTrainingArguments,
    TrainerCallback,
)
from transformers.trainer_pt_utils import LengthGroupedSampler

from repcali.checkpoints import CHECKPOINTS_DIR, Checkpointer
from repcali.config import selection_metric, selects
from repcali.console import quiet
from repcali.errors import RepCaliError, one_line
from repcali.formatters import detokenize_wordpiece, join_cjk
from repcali.methods import unwrap
from repcali.precision import run_precision, trainer_arguments, use_tf32
from repcali.sharding import unsharded
from repcali.validate import check_trainer

log = logging.getLogger("repcali")
losses = logging.getLogger("repcali.trainer")  # train.log's; the console shows them with -v (repcali/console.py)


class RunningLoss:
    """The sum of every step's training loss since step 0, kept on the device (no sync per step).

    It is saved with each checkpoint and restored on resume, so the run's mean loss is the same
    number however often the run was interrupted, and a NaN at any step, logged or not, stays in it.
    Multi-process runs average it over the processes at each save and at the end.
    """

    def __init__(self) -> None:
        self._start = 0.0  # the sum restored from a checkpoint
        self._sum: torch.Tensor | None = None  # on the loss's device, from the first step of this process
        self._synchronized = True

    def add(self, loss: torch.Tensor) -> None:
        loss = loss.detach().to(torch.float32 if loss.device.type == "mps" else torch.float64)
        if self._sum is None:
            self._sum = torch.full((), self._start, dtype=loss.dtype, device=loss.device)
        self._sum = self._sum + loss
        self._synchronized = False

    def total(self) -> float:
        return self._start if self._sum is None else self._sum.item()

    def synchronize(self) -> None:
        """Make the sum the mean over processes (a no-op on one process, or when nothing was added since)."""
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        if distributed and not self._synchronized and self._sum is not None:
            torch.distributed.all_reduce(self._sum)
            self._sum /= torch.distributed.get_world_size()
        self._synchronized = True

    def state_dict(self) -> dict:
        return {"loss_sum": self.total()}

    def load_state_dict(self, state: dict) -> None:
        self._start, self._sum = float(state["loss_sum"]), None


class FiniteLoss(TrainerCallback):
    """Fail with a fix once the training loss is not finite, whether or not that step was logged.

    The running sum is read (one device sync) only where the Trainer syncs anyway: at logging steps,
    before every checkpoint (so none holds a diverged model) and at the end of training.
    """

    def __init__(self, loss: RunningLoss) -> None:
        self.loss = loss

    def check(self, step: int) -> None:
        total = self.loss.total()
        if not math.isfinite(total):
            raise RepCaliError(
                f"Training loss became {'nan' if math.isnan(total) else total} by step {step}. "
                "Fix: lower trainer.learning_rate, set trainer.max_grad_norm, or set precision=fp32."
            )

    def on_step_end(self, args, state, control, **kwargs):
        if control.should_log or control.should_save or control.should_training_stop:
            self.check(state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        self.check(state.global_step)


class LogLines(TrainerCallback):
    """The Trainer's logs as log lines: each validation on the console and in ``train.log``, the training
    losses in ``train.log``. The Trainer's own (a progress bar's writes, or ``PrinterCallback``'s dicts)
    reached the console only, so a run's log held no loss."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        shown = ", ".join(
            f"{name.removeprefix('eval_')} {f'{value:.4g}' if isinstance(value, float) else value}"
            for name, value in logs.items()
            if not name.endswith("_per_second")
        )
        if any(name.startswith("eval_") for name in logs):
            log.info("validation at step %d of %d: %s", state.global_step, state.max_steps, shown)
        else:
            losses.info("step %d of %d: %s", state.global_step, state.max_steps, shown)


class EpochSeededLengthGroupedSampler(LengthGroupedSampler):
    """Length-grouped batches whose order depends on the seed and the epoch only.

    The stock sampler draws from the global RNG when an epoch starts, which a run resumed in the
    middle of a later epoch cannot reproduce (the Trainer restores the RNG after that draw). Seeding
    by epoch, as ``DistributedSampler`` does, makes a resumed run see the batches of an uninterrupted one.
    """

    def __init__(self, batch_size: int, lengths: list[int], seed: int) -> None:
        super().__init__(batch_size, lengths=lengths, generator=torch.Generator())
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        self.generator.manual_seed(self.seed + self.epoch)
        return super().__iter__()


class Seq2SeqTrainer(transformers.Seq2SeqTrainer):
    """``Seq2SeqTrainer`` that keeps evaluation in dataset order, sums every step's loss, and draws
    length-grouped training batches by (seed, epoch), so that resumed runs match uninterrupted ones;
    its encoder may train at a fraction of the learning rate (``model.encoder_lr_scale``).

    With ``train_sampling_strategy=group_by_length`` the stock trainer also shuffles evaluation
    batches by length, so predictions could not be matched to raw references by position.
    (Distributed evaluation is already ordered: accelerate gathers shards in order.)
    """

    def __init__(self, *args, validation_beams: int | None = None, encoder_lr_scale: float = 1.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.running_loss = RunningLoss()
        self.validation_beams = validation_beams  # beams while validating (task.selection.num_beams)
        self.encoder_lr_scale = encoder_lr_scale

    def create_optimizer(self, model=None):
        """The stock optimizer, with the encoder's parameters moved to groups of ``lr × encoder_lr_scale``
        (the learning-rate schedule then scales every group alike)."""
        fresh = self.optimizer is None
        optimizer = super().create_optimizer(model)
        if fresh and self.encoder_lr_scale != 1:
            encoder = {id(p) for p in unwrap(self.model).get_encoder().parameters()}
            for group in list(optimizer.param_groups):
                slow = [p for p in group["params"] if id(p) in encoder]
                if slow:
                    group["params"] = [p for p in group["params"] if id(p) not in encoder]
                    optimizer.add_param_group({**group, "params": slow, "lr": group["lr"] * self.encoder_lr_scale})
            optimizer.param_groups = [group for group in optimizer.param_groups if group["params"]]
        return optimizer

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval", **gen_kwargs):
        """Validation during training; ``predict`` (the scored split) keeps the task's decoding."""
        if self.validation_beams is not None:
            gen_kwargs.setdefault("num_beams", self.validation_beams)
        return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix, **gen_kwargs)

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        self.running_loss.add(loss)
        return loss

    def _get_train_sampler(self, train_dataset=None):
        sampler = super()._get_train_sampler(train_dataset)
        if type(sampler) is LengthGroupedSampler:
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            return EpochSeededLengthGroupedSampler(sampler.batch_size, sampler.lengths, seed)
        return sampler

    def _issue_warnings_after_load(self, load_result):
        """A tied weight (the input embeddings and LM head that share one tensor) is saved once, under its
        source's name; loading the best checkpoint then warned that the others were missing, losing nothing."""
        tied = getattr(unwrap(self.model), "all_tied_weights_keys", None) or {}
        missing = [key for key in load_result.missing_keys if key not in tied]
        if len(missing) < len(load_result.missing_keys):
            load_result = load_result._replace(missing_keys=missing)
        super()._issue_warnings_after_load(load_result)

    def _get_eval_sampler(self, eval_dataset):
        return SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None, **gen_kwargs):
        with unsharded(self.model):  # FSDP2: generate reads the root unit's weights outside its forward
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys, **gen_kwargs)


class DataCollator(DataCollatorForSeq2Seq):
    """``DataCollatorForSeq2Seq`` whose labels never begin with the token the decoder starts from.

    BERT's tokenizer starts every target with [CLS], the token BERT2BERT's decoder starts from. Left in,
    the decoder learns to emit a second [CLS], and beam search then finds the empty "[CLS] [SEP]"
    almost free: every prediction was empty after 3 epochs. Other backbones' targets do not start
    with their decoder start token (BART's starts at </s>, its targets at <s>).
    """

    def __call__(self, features, return_tensors=None):
        start = self.model.config.decoder_start_token_id
        features = [
            {**feature, "labels": feature["labels"][1:]} if feature["labels"][:1] == [start] else feature
            for feature in features
        ]
        return super().__call__(features, return_tensors)


def generation_config(model, settings: DictConfig) -> GenerationConfig:
    """The model's generation config (special tokens) with the task's decoding settings on top.

    Lengths go in as ``max_length``/``min_length`` = new tokens + the decoder start token, which is
    what ``max_new_tokens`` means for an encoder-decoder: ``Seq2SeqTrainer`` writes the default
    ``max_length=20`` into the model's config after its first batch, and ``generate`` would then
    warn on every later batch that both are set. Greedy decoding (``num_beams: 1``) drops the model's
    beam-search ``early_stopping``, which would otherwise fail the generation config's validation.
    """
    decoding = OmegaConf.to_container(settings, resolve=True)
    lengths = {"max_length": decoding.pop("max_new_tokens") + 1, "min_length": decoding.pop("min_new_tokens") + 1}
    config = deepcopy(model.generation_config)
    config.update(**decoding, **lengths)
    if config.num_beams == 1:  # a beam-search flag that a model's own config may set (BERT2BERT's): greedy refuses it
        config.early_stopping = False
    return config


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
    Checkpointing is ``cfg.checkpoint``'s, outside the run's identity; the Trainer saves on the step
    interval and at the end of training, :class:`~repcali.checkpoints.Checkpointer` on the clock.
    """
    kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    check_trainer(kwargs)  # each key a Seq2SeqTrainingArguments field the run does not set, each value of its type
    kwargs.setdefault("dataloader_pin_memory", torch.cuda.is_available())  # without CUDA torch warns at each loader
    kwargs.setdefault("disable_tqdm", quiet())  # train.py without -v: no progress bars (repcali/console.py)
    every_steps = cfg.checkpoint.every_steps
    if every_steps is not None and every_steps < 1:
        raise RepCaliError(f"checkpoint.every_steps={every_steps}. Fix: a positive number of steps, or null.")
    kwargs.update(
        save_strategy="steps" if every_steps or cfg.checkpoint.every_minutes else "no",
        save_steps=every_steps or sys.maxsize,  # sys.maxsize: only at the end of training
        output_dir=str(run_dir / CHECKPOINTS_DIR),
        seed=cfg.seed,
        report_to=list(report_to),
        predict_with_generate=True,
        generation_config=generation,
    )
    precision = run_precision(cfg)  # precision=auto resolved here: bf16 on a GPU with bf16, else fp32
    kwargs.update(trainer_arguments(precision))
    if not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        kwargs.setdefault("use_cpu", True)  # else accelerate sees no distributed run: each process trains alone
    if selects(cfg):
        kwargs.update(selection_arguments(cfg))
    try:
        args = Seq2SeqTrainingArguments(**kwargs)
    except (TypeError, ValueError) as error:
        raise RepCaliError(
            f"Bad trainer option: {one_line(error)}. Fix: correct the trainer.* value it names."
        ) from None
    _check_values(args)
    use_tf32(precision)
    return args


def selection_arguments(cfg: DictConfig) -> dict:
    """The Trainer's own model selection: a checkpoint at every evaluation (the best must be there to
    load), the best one by the validation metric loaded when training ends. The Checkpointer adds
    ``checkpoint.every_steps`` and the clock's saves, and never deletes the best."""
    return {
        "save_strategy": cfg.trainer.eval_strategy,
        "save_steps": cfg.trainer.get("eval_steps"),
        "load_best_model_at_end": True,
        "metric_for_best_model": selection_metric(cfg.task),
        "greater_is_better": True,
        # the early-stopping count since the best is in each checkpoint: a resumed run stops where it would have
        "restore_callback_states_from_checkpoint": cfg.task.selection.patience is not None,
    }


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
    selecting = selects(cfg)
    trainer = Seq2SeqTrainer(
        model=model,
        args=args,
        train_dataset=data.train,
        eval_dataset=data.validation if selecting else None,
        compute_metrics=validation_metrics(cfg.task, tokenizer, data) if selecting else None,
        data_collator=DataCollator(tokenizer, model=model, pad_to_multiple_of=8 if args.fp16 or args.bf16 else None),
        processing_class=tokenizer,
        validation_beams=cfg.task.selection.num_beams if selecting else None,
        encoder_lr_scale=cfg.model.encoder_lr_scale,
    )
    if args.save_strategy != "no":  # before the guard: it checks the loss before a save this one asks for
        every_steps = cfg.checkpoint.every_steps if selecting else None  # else the Trainer's save_steps
        trainer.add_callback(
            Checkpointer(cfg.checkpoint.every_minutes, cfg.checkpoint.keep, trainer.running_loss, every_steps)
        )
    if selecting and cfg.task.selection.patience is not None:
        trainer.add_callback(EarlyStoppingCallback(early_stopping_patience=cfg.task.selection.patience))
    trainer.add_callback(FiniteLoss(trainer.running_loss))
    trainer.remove_callback(PrinterCallback)  # without progress bars it prints each log as a dict: LogLines logs it
    trainer.add_callback(LogLines())
    return trainer


def validation_metrics(task: DictConfig, tokenizer, data):
    """``compute_metrics`` for validation: decoded as :func:`predict` decodes, scored by
    :func:`repcali.metrics.compute` (the test's scorer), running only the metric that selects."""
    from repcali.metrics import compute, producing

    metric = selection_metric(task)
    names = producing(metric, list(task.metrics))

    def scores(prediction) -> dict[str, float]:
        texts = decode(prediction.predictions, tokenizer, task.language)
        found = compute(names, texts, data.validation_references, task.language, ids=data.validation_ids)
        if metric not in found.corpus:
            raise RepCaliError(
                f"The selection metric {metric} was not computed ({found.settings}). "
                "Fix: task.selection.metric=<a metric computed here>, or trainer.eval_strategy=no."
            )
        return {name: float(value) for name, value in found.corpus.items()}

    return scores


def decode(token_ids: np.ndarray, tokenizer, language: str = "en") -> list[str]:
    """Generated ids (padded with -100 across batches) to text.

    BERT-vocabulary tokenizers (BERT2BERT, Chinese BART) decode with spaces around punctuation and,
    in Chinese, between characters: Chinese output loses those spaces, English output is detokenized.
    """
    token_ids = np.where(token_ids < 0, tokenizer.pad_token_id, token_ids)
    texts = [text.strip() for text in tokenizer.batch_decode(token_ids, skip_special_tokens=True)]
    if language == "zh":
        return [join_cjk(text) for text in texts]
    return [detokenize_wordpiece(text) for text in texts] if spaces_punctuation(tokenizer) else texts


def spaces_punctuation(tokenizer) -> bool:
    """Whether decoding puts spaces around punctuation, as BERT-vocabulary tokenizers do (BERT2BERT, ProphetNet)."""
    return tokenizer.decode(tokenizer("a-b", add_special_tokens=False)["input_ids"]) == "a - b"


def predict(trainer: Seq2SeqTrainer, dataset, tokenizer, language: str = "en") -> list[str]:
    """Batched generation over ``dataset`` in its order, decoded to text (scored by the caller: the
    trainer's ``compute_metrics`` is validation's, with validation's references).

    Distributed, ``Seq2SeqTrainer.predict`` gathers every process's batches in dataset order, with
    the samples that even out the last batches appended (it gathers without dropping them): cut there.
    """
    compute_metrics, trainer.compute_metrics = trainer.compute_metrics, None
    try:
        output = trainer.predict(dataset, metric_key_prefix="eval")
    finally:
        trainer.compute_metrics = compute_metrics
    return decode(output.predictions[: len(dataset)], tokenizer, language)
