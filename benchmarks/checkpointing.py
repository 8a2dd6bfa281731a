"""Benchmark 6: what checkpointing costs: a checkpoint's size, one save's wall time, and the step-time
overhead at the default interval (``checkpoint.every_minutes=10``)."""

from __future__ import annotations

import copy
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from omegaconf import OmegaConf

from benchmarks.calibration_overhead import backbone_config
from benchmarks.contract import Benchmark, Row, judged
from benchmarks.measure import ROOT, compose_config, interleave, paired_ratio, summarize

TITLE = "Checkpointing: checkpoint size, save time, and the step-time overhead at the default interval"
METHOD = """
Each round trains the same model (one random initialisation, copied) twice through
``repcali.training.build_trainer``, as ``train.py`` does, on a fixed synthetic batch: once with
checkpoints off, once with the default ``checkpoint.every_minutes=10``, the first variant
rotating. A run that short saves once, at the end of training (the same content as a save on
the clock: model with the RepCali block, AdamW state, scheduler, RNG states, then the
completeness manifest); one save is timed from the step that decides it to the end of the
manifest, and the checkpoint folder is measured on disk. The overhead at the default interval
is that save time over 600 s (one save per 10 minutes of training); the step time of each
variant, saves excluded, shows what reading the clock at logging steps costs. Checkpoints are
written to the system's temporary folder (``TMPDIR``: set it to the runs folder's disk to
measure that disk). bart_base is a random initialisation of the published shape, no download.
"""

INTERVAL_S = 600.0  # checkpoint.every_minutes=10, the default


@dataclass(frozen=True)
class Setting:
    backbone: str  # tiny_t5 (the embedded default) or bart_base (its published shape, random weights)
    batch: int
    source_length: int
    target_length: int
    steps: int  # training steps per sample
    rounds: int
    warmup: int = 0  # untimed rounds first (the first save pays for imports and first-touch page faults)


SETTINGS = {
    "smoke": [Setting("tiny_t5", 4, 32, 8, 2, 1), Setting("bart_base", 1, 16, 8, 1, 1)],
    "quick": [Setting("tiny_t5", 16, 128, 64, 20, 3, 1), Setting("bart_base", 2, 64, 16, 2, 2)],
    "full": [Setting("tiny_t5", 16, 128, 64, 50, 7, 1), Setting("bart_base", 4, 256, 64, 10, 5, 1)],
}


@dataclass
class Sample:
    train_s: float  # trainer.train(), wall time
    save_s: list[float]  # each save: from the step that decides it to the end of its manifest
    size_bytes: int  # the checkpoint folder on disk (0: none)


def _saves_timer():
    from transformers import TrainerCallback

    class SaveTimer(TrainerCallback):
        """Added last: its on_step_end sees the decision to save, its on_save runs after the manifest."""

        def __init__(self) -> None:
            self.start: float | None = None
            self.seconds: list[float] = []

        def on_step_end(self, args, state, control, **kwargs):
            self.start = time.perf_counter() if control.should_save else None

        def on_save(self, args, state, control, **kwargs):
            if self.start is not None:
                self.seconds.append(time.perf_counter() - self.start)

    return SaveTimer()


def synthetic_data(model, setting: Setting):
    """The same batch of random token ids, ``batch × steps`` rows: what the Trainer reads as a task's data."""
    import torch
    from datasets import Dataset

    generator = torch.Generator().manual_seed(0)
    rows = setting.batch * setting.steps
    vocab = model.config.vocab_size
    inputs = torch.randint(3, vocab, (rows, setting.source_length), generator=generator).tolist()
    labels = torch.randint(3, vocab, (rows, setting.target_length), generator=generator).tolist()
    train = Dataset.from_dict(
        {"input_ids": inputs, "attention_mask": [[1] * setting.source_length] * rows, "labels": labels}
    )
    return SimpleNamespace(train=train)


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def train_once(cfg, model, tokenizer, data, every_minutes: float | None) -> Sample:
    from repcali.checkpoints import CHECKPOINTS_DIR, checkpoint_folders
    from repcali.training import build_trainer

    cfg = OmegaConf.merge(cfg, {"checkpoint": {"every_minutes": every_minutes, "every_steps": None}})
    with tempfile.TemporaryDirectory(prefix="repcali-bench-checkpoints-") as work:
        run_dir = Path(work)
        trainer = build_trainer(cfg, copy.deepcopy(model), tokenizer, data, run_dir, [])
        timer = _saves_timer()
        trainer.add_callback(timer)
        start = time.perf_counter()
        trainer.train()
        train_s = time.perf_counter() - start
        folders = checkpoint_folders(run_dir / CHECKPOINTS_DIR)
        size = folder_bytes(folders[-1].path) if folders else 0
    return Sample(train_s, timer.seconds, size)


def measure_setting(setting: Setting, device: str) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from repcali.calibration import attach_repcali
    from repcali.modeling import count_parameters

    torch.manual_seed(0)
    model = AutoModelForSeq2SeqLM.from_config(backbone_config(setting.backbone))
    attach_repcali(model, None)  # a RepCali run: the block is saved with every checkpoint
    tokenizer = AutoTokenizer.from_pretrained(ROOT / "assets" / "tiny-t5")  # pads nothing: rows are equal length
    data = synthetic_data(model, setting)
    cfg = compose_config(
        [
            f"trainer.max_steps={setting.steps}",
            f"trainer.per_device_train_batch_size={setting.batch}",
            "+trainer.disable_tqdm=true",
            "trainer.eval_strategy=no",  # no validation: the synthetic data has none, and it is not what is timed
            *(["+trainer.use_cpu=true"] if device == "cpu" else []),
        ]
    )
    samples: dict[str, list[Sample]] = {"off": [], "10 min": []}
    minutes = {"off": None, "10 min": INTERVAL_S / 60}

    def variant(name: str):
        def sample() -> float:
            samples[name].append(train_once(cfg, model, tokenizer, data, minutes[name]))
            done = samples[name][-1]
            return (done.train_s - sum(done.save_s)) / setting.steps  # step time, saves excluded

        return sample

    step_s = interleave({name: variant(name) for name in samples}, setting.rounds, setting.warmup)
    for name in samples:
        del samples[name][: setting.warmup]
    saves = [seconds for sample in samples["10 min"] for seconds in sample.save_s]
    return {
        "setting": asdict(setting),
        "device": device,
        "params": count_parameters(model),
        "step_s": {name: summarize(values) for name, values in step_s.items()},
        "step_ratio": paired_ratio(step_s["10 min"], step_s["off"]),
        "save_s": summarize(saves),
        "overhead_pct": summarize([100 * seconds / INTERVAL_S for seconds in saves]),
        "checkpoint_bytes": [sample.size_bytes for sample in samples["10 min"]],
        "saves_per_sample": [len(sample.save_s) for sample in samples["10 min"]],
        "saves_when_off": sum(len(sample.save_s) for sample in samples["off"]),  # 0: checkpoints really off
    }


def rows(result: dict) -> list[Row]:
    setting = result["setting"]
    case = (
        f"{setting['backbone']} + RepCali ({result['params'] / 1e6:.1f}M, {result['device']}, fp32), "
        f"batch {setting['batch']}×{setting['source_length']}→{setting['target_length']}"
    )
    size = max(result["checkpoint_bytes"])
    step, ratio = result["step_s"], result["step_ratio"]
    change = {**ratio, **{key: 100 * (ratio[key] - 1) for key in ("median", "q1", "q3")}}
    ms = {name: f"{stats['median'] * 1e3:.1f} ms" for name, stats in step.items()}
    step_change = judged(change, "+.2f", " %")
    return [
        Row(case, "checkpoint size on disk", result=f"{size / 2**20:.1f} MiB"),
        Row(case, "one save (Trainer's write + manifest)", **judged(result["save_s"], ".2f", " s")),
        Row(case, "overhead at every_minutes=10 (save ÷ 600 s)", **judged(result["overhead_pct"], ".3f", " %")),
        Row(case, "step, every_minutes=10 vs off (saves excluded)", ms["off"], ms["10 min"], **step_change),
    ]


def run(mode: str, device: str) -> Benchmark:
    from datasets import disable_progress_bars
    from transformers.utils import logging as hf_logging

    disable_progress_bars()
    hf_logging.set_verbosity_error()
    results = []
    for setting in SETTINGS[mode]:
        results.append(measure_setting(setting, device))
        for row in rows(results[-1]):  # progress, so a run cut short still shows what it measured
            print(f"[checkpointing] {row.case}: {row.measure}: {row.result}", file=sys.stderr)
    return Benchmark(TITLE, METHOD, [row for result in results for row in rows(result)], results)
