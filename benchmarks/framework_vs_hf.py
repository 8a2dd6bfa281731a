"""Benchmark 2: training samples/s of ``train.py`` against a minimal plain ``Seq2SeqTrainer`` script."""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.contract import Benchmark, Row, judged
from benchmarks.measure import ROOT, compose_config, interleave, paired_ratio, run_command, summarize
from repcali.config import PROJECT_ROOT
from repcali.results import RESULTS_NAME, read_results

TITLE = "Framework vs plain Hugging Face: training samples/s"
METHOD = """
Both run as a user runs them, one fresh process each, on the same model (same config and seed,
so the same initial weights), data, templates, lengths, batch size, learning rate and steps; the
plain script (``benchmarks/plain_hf.py``) takes every one of those values from ``train.py``'s
composed config. Samples/s is the Trainer's own ``train_samples_per_second`` in both
(steps × batch / training time), so start-up, tokenisation and evaluation are outside it; what
differs is the framework: length-grouped batches, its callbacks, its hook-free calib=off model.
Two source limits: the task's 128 tokens, where nearly every ACLSum source is cut to the same
length (nothing for grouping to save), and 512, where lengths vary as in most summarisation data.
"""

TARGET_RATIO = 1.0
# Published t5-small shape, with the tiny tokenizer's vocabulary (random weights, built here).
T5_SMALL_SHAPE = dict(d_model=512, d_kv=64, d_ff=2048, num_layers=6, num_heads=8)


@dataclass(frozen=True)
class Setting:
    backbone: str  # tiny_t5, or t5_small_shape (a t5-small-sized model built into a temporary folder)
    max_steps: int
    rounds: int
    max_source_length: int = 128  # the task's default; 512 keeps ACLSum's varied lengths (what grouping is for)


SETTINGS = {
    "smoke": [Setting("tiny_t5", 1, 1)],
    # quick: 512 only (each round is two fresh processes, ~15 s each); 128 tokens is in full mode
    "quick": [Setting("tiny_t5", 8, 3, 512)],
    "full": [Setting("tiny_t5", 150, 5), Setting("tiny_t5", 60, 5, 512), Setting("t5_small_shape", 20, 3)],
}


def _model_folder(backbone: str, work: Path) -> str:
    if backbone == "tiny_t5":
        return str(ROOT / "assets" / "tiny-t5")
    from transformers import AutoTokenizer, T5Config

    folder = work / backbone
    tokenizer = AutoTokenizer.from_pretrained(ROOT / "assets" / "tiny-t5")
    T5Config(vocab_size=len(tokenizer), decoder_start_token_id=0, **T5_SMALL_SHAPE).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def _local(path: str) -> str:
    candidate = Path(path)
    return str(candidate if candidate.is_absolute() else PROJECT_ROOT / candidate)


def measure_setting(setting: Setting, work: Path) -> dict[str, Any]:
    model_folder = _model_folder(setting.backbone, work)
    overrides = [
        "model=tiny_t5",
        f"model.name_or_path={model_folder}",
        "task=aclsum",
        "calib=off",
        "checkpoint.every_minutes=null",  # the plain script saves no checkpoint either
        "trainer.eval_strategy=no",  # nor validates while training
        f"trainer.max_steps={setting.max_steps}",
        f"task.max_source_length={setting.max_source_length}",
        # evaluation is outside samples/s; keep it short
        "task.max_eval_samples=4",
        "task.generation.num_beams=1",
        "task.generation.max_new_tokens=4",
        "task.generation.no_repeat_ngram_size=0",
        "task.generation.early_stopping=false",  # num_beams=1 with early_stopping=true is refused
    ]
    cfg = compose_config(overrides)
    runs_dir = work / f"runs-{setting.backbone}-{setting.max_source_length}"
    env = {"HF_DATASETS_CACHE": str(work / "datasets-cache")}
    framework_command = [sys.executable, "train.py", *overrides, f"runs_dir={runs_dir}", "save_model=false"]
    framework_command.append("rerun=true")  # every round trains again
    trainer = cfg.trainer
    plain_output = work / f"plain-{setting.backbone}-{setting.max_source_length}"
    plain_options = {  # every value from train.py's composed config
        "model": model_folder,
        "train-file": _local(cfg.task.data_files.train),
        "source": (cfg.task.prefix if cfg.model.task_prefix else "") + cfg.task.source,
        "target": cfg.task.target,
        "max-source-length": min(cfg.task.max_source_length, cfg.model.max_positions),
        "max-target-length": cfg.task.max_target_length,
        "batch-size": trainer.per_device_train_batch_size,
        "learning-rate": trainer.learning_rate,
        "warmup-steps": trainer.warmup_steps,
        "weight-decay": trainer.weight_decay,
        "logging-steps": trainer.logging_steps,
        "max-steps": setting.max_steps,
        "seed": cfg.seed,
        "output-dir": plain_output,
    }
    plain_command = [sys.executable, "benchmarks/plain_hf.py"]
    plain_command += [part for key, value in plain_options.items() for part in (f"--{key}", str(value))]

    def framework() -> float:
        run_command(framework_command, env)
        (results_path,) = runs_dir.rglob(RESULTS_NAME)
        return read_results(results_path.parent).timings["train_samples_per_second"]

    def plain() -> float:
        run_command(plain_command, env)
        return json.loads((plain_output / "train_results.json").read_text())["train_samples_per_second"]

    samples = interleave({"plain_hf": plain, "train_py": framework}, setting.rounds)
    return {
        "setting": asdict(setting),
        "batch_size": trainer.per_device_train_batch_size,
        "samples_per_s": {name: summarize(values) for name, values in samples.items()},
        "ratio": paired_ratio(samples["train_py"], samples["plain_hf"]),
    }


def row(result: dict) -> Row:
    setting, per_second = result["setting"], result["samples_per_s"]
    case = f"{setting['backbone']} on ACLSum, sources ≤ {setting['max_source_length']} tokens, " + (
        f"batch {result['batch_size']}, {setting['max_steps']} steps"
    )
    plain, framework = (f"{per_second[name]['median']:.1f}/s" for name in ("plain_hf", "train_py"))
    cells = judged(result["ratio"], ".3f", "×", TARGET_RATIO, at_most=False)
    return Row(case, "training samples/s, train.py ÷ plain Seq2SeqTrainer", plain, framework, **cells)


def run(mode: str, device: str) -> Benchmark:
    with tempfile.TemporaryDirectory(prefix="repcali-bench-") as work:
        results = [measure_setting(setting, Path(work)) for setting in SETTINGS[mode]]
    return Benchmark(TITLE, METHOD, [row(result) for result in results], results)
