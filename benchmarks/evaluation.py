"""Benchmark 3: evaluation throughput: generation over a validation set as ``train.py`` does it, and unbatched."""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from omegaconf import OmegaConf

from benchmarks.contract import Benchmark, Row, judged
from benchmarks.measure import compose_config, interleave, paired_ratio, summarize, timed

TITLE = "Evaluation throughput: batched and length-sorted (train.py) vs one at a time"
METHOD = """
``train.py`` generates with ``repcali.training.predict``: the Trainer's batched generation over
the evaluation split that ``repcali.data`` sorted by source length (longest first), so a batch
holds similar lengths and pads little. Compared, on the same model, data and decoding settings
(the task's: beam search, its length limits): the same code path one example at a time
(evaluation batch size 1), and batched but in the split's original order (what sorting buys).
The model is the embedded default (tiny T5) after a short training, so that it stops at its own
end-of-sequence like a fine-tuned model rather than always running to the length limit.
"""


@dataclass(frozen=True)
class Setting:
    examples: int  # validation examples generated per sample
    train_steps: int  # training before evaluation, so generation lengths look like a fine-tuned model's
    rounds: int


SETTINGS = {
    "smoke": Setting(4, 2, 1),
    "quick": Setting(24, 20, 3),
    "full": Setting(150, 300, 5),
}


def run(mode: str, device: str) -> Benchmark:
    from datasets import disable_progress_bars
    from transformers import set_seed
    from transformers.utils import logging as hf_logging

    from repcali.data import build_task_data
    from repcali.modeling import load_backbone
    from repcali.training import build_trainer, predict

    disable_progress_bars()
    hf_logging.set_verbosity_error()
    setting = SETTINGS[mode]
    overrides = [
        "task.eval_split=validation",
        "trainer.eval_strategy=no",  # generation over the scored split is measured, not validation
        "task.max_source_length=512",  # the default 128 cuts nearly every abstract: nothing left to sort
        f"task.max_eval_samples={setting.examples}",
        f"trainer.max_steps={setting.train_steps}",
        "+trainer.disable_tqdm=true",
    ]
    cfg = compose_config(overrides)
    set_seed(cfg.seed)
    model, tokenizer = load_backbone(cfg.model, cfg.task.language)
    data = build_task_data(
        cfg.task, tokenizer, use_prefix=cfg.model.task_prefix, max_positions=cfg.model.max_positions
    )
    one_at_a_time_cfg = compose_config([*overrides, "trainer.per_device_eval_batch_size=1"])
    with tempfile.TemporaryDirectory(prefix="repcali-bench-") as work:
        batched = build_trainer(cfg, model, tokenizer, data, Path(work), [])
        single = build_trainer(one_at_a_time_cfg, model, tokenizer, data, Path(work), [])
        batched.train()
        for trainer in (batched, single):  # warm-up: first-call set-up stays out of the timings
            predict(trainer, data.eval.select(range(2)), tokenizer)
        unsorted = data.eval.shuffle(seed=0)
        outputs: dict[str, list[str]] = {}

        def variant(name: str, trainer, dataset):
            def sample() -> float:
                seconds = timed(
                    lambda: outputs.__setitem__(name, predict(trainer, dataset, tokenizer, cfg.task.language))
                )
                return len(dataset) / seconds

            return sample

        samples = interleave(
            {
                "one_at_a_time": variant("one_at_a_time", single, data.eval),
                "batched_unsorted": variant("batched_unsorted", batched, unsorted),
                "train_py": variant("train_py", batched, data.eval),
            },
            setting.rounds,
        )
    lengths = [len(tokenizer(text)["input_ids"]) for text in outputs["train_py"]]
    sources = sorted(data.eval["length"])  # what sorting can group: after truncation at the task's limit
    result = {
        "setting": asdict(setting),
        "batch_size": cfg.trainer.per_device_eval_batch_size,
        "generation": OmegaConf.to_container(cfg.task.generation),
        "mean_output_tokens": sum(lengths) / len(lengths),
        "source_tokens": {
            "min": sources[0],
            "median": sources[len(sources) // 2],
            "max": sources[-1],
            "share_at_max": sources.count(sources[-1]) / len(sources),
        },
        "examples_per_s": {name: summarize(values) for name, values in samples.items()},
        "ratio_vs_one_at_a_time": paired_ratio(samples["train_py"], samples["one_at_a_time"]),
        "ratio_vs_unsorted": paired_ratio(samples["train_py"], samples["batched_unsorted"]),
        # batching must not change what is generated (beyond padding-level numerical noise)
        "same_predictions_as_one_at_a_time": outputs["train_py"] == outputs["one_at_a_time"],
    }
    speed = {name: f"{stats['median']:.1f}/s" for name, stats in result["examples_per_s"].items()}
    source, generation = result["source_tokens"], cfg.task.generation
    case = (
        f"tiny_t5 on {setting.examples} ACLSum validation examples ({source['min']}–{source['max']} source tokens), "
        f"batch {result['batch_size']}, {generation.num_beams} beams, "
        f"{result['mean_output_tokens']:.0f} output tokens on average (≤ {generation.max_new_tokens})"
    )
    rows = [
        Row(case, f"examples/s, train.py ÷ {name}", speed[variant], speed["train_py"], **judged(ratio, ".2f", "×"))
        for name, variant, ratio in (
            ("one at a time", "one_at_a_time", result["ratio_vs_one_at_a_time"]),
            ("batched unsorted", "batched_unsorted", result["ratio_vs_unsorted"]),
        )
    ]
    return Benchmark(TITLE, METHOD, rows, [result])
