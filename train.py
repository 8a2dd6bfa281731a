"""Fine-tune an encoder-decoder with or without RepCali, evaluate it, and record the run.

    python train.py                                        # embedded default: tiny T5 on ACLSum, offline
    python train.py model=bart task=xsum calib=on          # any backbone x task x calib (bart = bart_large)
    python train.py method=lora calib=on                   # any fine-tuning method (conf/method/), + RepCali
    python train.py -m calib=off,on seed=1,2,3             # a sweep; completed runs are skipped
    torchrun --standalone --nproc_per_node=4 train.py model=t5_base task=xsum   # multi-GPU, same code
    python train.py --cfg job                              # print the composed config

Every run lives in a directory derived from its config,
``runs/<experiment_name>/<task>/<model>/<method>/calib-<name>/seed<seed>-<hash>``, and ends with
``results.json`` there (status, metrics, parameters, config, git, versions, timings).
Running a completed config again prints its metrics and exits; ``rerun=true`` trains it again.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from repcali.config import register, run_path, unknown_choice
from repcali.errors import RepCaliError
from repcali.report import metrics_table
from repcali.runs import RunRecord, read_results, write_predictions
from repcali.tracking import finish_wandb, is_main_process, start_wandb

register()
log = logging.getLogger("repcali")


def train_and_evaluate(cfg: DictConfig, run_dir: Path, record: RunRecord) -> None:
    """The experiment: load, apply the method, calibrate, tokenize, train, generate, score, save."""
    # Heavy libraries load here, so `--cfg job` and skipped reruns start in a fraction of a second.
    from transformers import set_seed

    from repcali.calibration import attach_repcali
    from repcali.config import repcali_config
    from repcali.data import build_task_data
    from repcali.methods import apply_method, check_combination, unwrap
    from repcali.metrics import compute
    from repcali.modeling import add_tokens, count_parameters, load_backbone, parameter_report, save_model
    from repcali.runs import host_info
    from repcali.training import build_trainer, predict

    check_combination(cfg.method.name, cfg.calib.enabled, cfg.calib.train)
    record.data["host"] = host_info()
    set_seed(cfg.seed)
    with record.timed("load"):
        model, tokenizer = load_backbone(cfg.model, cfg.task.language)
        add_tokens(model, tokenizer, cfg.task.new_tokens)
        backbone_total = count_parameters(model)
        model = apply_method(model, cfg.method.name, cfg.method.options)  # LoRA, adapter, ...: what trains
        if cfg.calib.enabled:
            attach_repcali(unwrap(model), repcali_config(cfg.calib))  # on the HF model inside a PEFT wrapper
    record.data["params"] = parameter_report(model, backbone_total)
    log.info("parameters: %s", record.data["params"])

    with record.timed("data"):
        data = build_task_data(
            cfg.task, tokenizer, use_prefix=cfg.model.task_prefix, max_positions=cfg.model.max_positions
        )

    report_to = start_wandb(cfg, run_dir, run_path(cfg))
    trainer = build_trainer(cfg, model, tokenizer, data, run_dir, report_to)
    with record.timed("train"):  # nothing to train (method=frozen calib=off): the backbone is evaluated as loaded
        train_output = trainer.train() if record.data["params"]["trainable"] else None
    if train_output is not None:
        record.data["timings"]["train_samples_per_second"] = train_output.metrics.get("train_samples_per_second")

    with record.timed("evaluate"):
        predictions = predict(trainer, data.eval, tokenizer, cfg.task.language)
        scores = compute(
            list(cfg.task.metrics), predictions, data.eval_references, cfg.task.language, ids=data.eval_ids
        )
    record.data["metrics"] = {**scores.corpus, **({"train_loss": train_output.training_loss} if train_output else {})}
    record.data["metric_settings"] = {
        "eval_split": cfg.task.eval_split,
        "n_examples": len(predictions),
        **scores.settings,
    }

    if trainer.is_world_process_zero():
        write_predictions(run_dir, data.eval_ids, predictions, data.eval_references, scores.per_example)
        if cfg.save_model:
            with record.timed("save"):  # a pretrained backbone is reloaded from its source, not copied
                base_model = model.config.name_or_path if cfg.model.init == "pretrained" else None
                save_model(model, tokenizer, run_dir / "model", base_model=base_model)


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    previous = read_results(run_dir)
    if previous and previous["status"] == "completed" and not cfg.rerun:
        print(metrics_table({run_path(cfg): previous}))
        print(f"Already completed; skipped (rerun=true trains it again). Run dir: {run_dir}")
        return

    record = RunRecord(run_dir, cfg, write=is_main_process())
    record.start()
    error: BaseException | None = None
    try:
        train_and_evaluate(cfg, run_dir, record)
        record.complete()
    except BaseException as caught:  # record every failure, Ctrl-C included, before reporting it
        error = caught
        record.fail(caught)
    finally:
        finish_wandb(record.data)

    print(metrics_table({run_path(cfg): record.data}))
    if error is None:
        print(f"Run dir: {run_dir}")
        return
    if not isinstance(error, RepCaliError):
        log.error("run failed", exc_info=error)  # a bug, not a user error: keep the traceback
    print(f"\nerror: {error}", file=sys.stderr)  # newline: a progress bar may hold the line
    print(f"Run failed; results.json records why. Run dir: {run_dir}")
    if HydraConfig.get().mode != RunMode.MULTIRUN or not isinstance(error, Exception):
        sys.exit(1)  # in a sweep, a failed run is recorded and the sweep goes on


if __name__ == "__main__":
    if problem := unknown_choice(sys.argv[1:]):
        sys.exit(f"error: {problem}")
    main()
