"""Benchmark 5: ``make tables`` over 1,000 synthetic results.

The results are written by the framework's own writer (``RunRecord`` → ``results.json``, and
``write_predictions`` → ``predictions.jsonl`` with per-example scores), into run directories named
by ``run_path`` from ``train.py``'s composed config: a main table (25 backbones × 5 tasks × calib ×
3 seeds), a baseline comparison (4 GLUE tasks × 7 methods × calib × 3 seeds) and a λ × LayerNorm
ablation cut short at 1,000 runs (so some cells miss seeds), with 2 % failed runs. Then
``python -m repcali.tables --runs <dir> --out <dir>`` (what ``make tables`` runs) is timed as a
fresh process. Until ``repcali.tables`` exists, the benchmark reports that it is not available.
"""

from __future__ import annotations

import importlib.util
import itertools
import random
import sys
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

from omegaconf import OmegaConf

from benchmarks.measure import compose_config, interleave, run_command, summarize

TARGET_S = 5.0
N_RESULTS = 1000
EXAMPLES = {"smoke": 20, "quick": 200, "full": 1000}  # per-example scores per run
ROUNDS = {"smoke": 1, "quick": 3, "full": 5}
MODELS = [
    "bart_base",
    "bart_large",
    "bart_large_cnn",
    "bart_large_xsum",
    "t5_small",
    "t5_base",
    "t5_large",
    "t5_3b",
    "t5_v1_1_base",
    "flan_t5_small",
    "flan_t5_base",
    "flan_t5_large",
    "flan_t5_xl",
    "mt5_small",
    "mt5_base",
    "mt5_large",
    "pegasus_large",
    "pegasus_xsum",
    "prophetnet_large",
    "cpt_base",
    "cpt_large",
    "bart_base_chinese",
    "bart_large_chinese",
    "mengzi_t5_base",
    "randeng_t5_784m",
]
GENERATION_TASKS = {"xsum": "rouge", "cnn_dailymail": "rouge", "webnlg": "bleu", "commongen": "bleu", "anlg": "rouge"}
GLUE_TASKS = ("sst2", "rte", "mnli", "cola")
METHODS = ("full", "lora", "prefix", "prompt", "ia3", "adapter", "bitfit")
SEEDS = (1, 2, 3)


def grid(n: int = N_RESULTS) -> list[dict[str, Any]]:
    """The synthetic sweep's first ``n`` cells, in sweep order."""
    main = [
        dict(experiment="main", model=m, task=t, method="full", calib=c, seed=s)
        for m, t, c, s in itertools.product(MODELS, GENERATION_TASKS, ("off", "on"), SEEDS)
    ]
    baselines = [
        dict(experiment="baselines", model="t5_base", task=t, method=m, calib=c, seed=s)
        for t, m, c, s in itertools.product(GLUE_TASKS, METHODS, ("off", "on"), SEEDS)
    ]
    ablation = [
        dict(experiment="ablation", model=m, task=t, method="full", calib="on", lam=lam, layernorm=ln, seed=s)
        for m, t, lam, ln, s in itertools.product(
            ("t5_base", "bart_base"), ("xsum", "commongen"), (0.1, 0.5, 2.0), ("post_add", "on_delta", "none"), SEEDS
        )
    ]
    return (main + baselines + ablation)[:n]


def _scores(rng: random.Random, metric: str, mean: float, n: int) -> tuple[dict[str, float], dict[str, list]]:
    if metric == "rouge":
        per_example = {
            name: [min(100.0, max(0.0, rng.gauss(mean * scale, 15))) for _ in range(n)]
            for name, scale in (("rouge1", 1.0), ("rouge2", 0.45), ("rougeL", 0.8), ("rougeLsum", 0.82))
        }
    elif metric == "bleu":
        per_example = {"bleu": [min(100.0, max(0.0, rng.gauss(mean * 0.7, 20))) for _ in range(n)]}
    else:
        per_example = {"accuracy": [100.0 * (rng.random() < mean / 100) for _ in range(n)]}
    return {name: sum(values) / n for name, values in per_example.items()}, per_example


def write_synthetic_runs(runs_dir: Path, examples: int, n: int = N_RESULTS, seed: int = 0) -> int:
    """Write ``n`` runs with the framework's writers; return how many failed."""
    import repcali.runs
    from repcali.config import run_path
    from repcali.runs import RunRecord, write_predictions

    rng = random.Random(seed)
    cfg = compose_config([])
    OmegaConf.resolve(cfg)  # interpolations once, not re-parsed in each of 1,000 run_path / to_container calls
    failed = 0
    # Provenance (git, package versions) once, not 1,000 times: 25 ms a run that a real run pays once.
    with (
        mock.patch.object(repcali.runs, "git_info", return_value=repcali.runs.git_info()),
        mock.patch.object(repcali.runs, "package_versions", return_value=repcali.runs.package_versions()),
    ):
        for cell in grid(n):
            cfg.experiment_name, cfg.model.name, cfg.task.name = cell["experiment"], cell["model"], cell["task"]
            cfg.method.name, cfg.seed = cell["method"], cell["seed"]
            cfg.calib.name, cfg.calib.enabled = cell["calib"], cell["calib"] == "on"
            cfg.calib.lam, cfg.calib.layernorm = cell.get("lam", 1.0), cell.get("layernorm", "post_add")
            metric = GENERATION_TASKS.get(cell["task"], "accuracy")
            cfg.task.metrics = [metric]
            run_dir = runs_dir / run_path(cfg)
            record = RunRecord(run_dir, cfg)
            record.start()  # as train.py: `running` first, then `completed` or `failed`
            if rng.random() < 0.02:
                failed += 1
                record.fail(RuntimeError("synthetic failure (benchmark data)"))
                continue
            base = random.Random(f"{cell['model']}/{cell['task']}").uniform(20, 45 if metric != "accuracy" else 90)
            mean = base + (0.4 if cell["calib"] == "on" else 0.0) + rng.gauss(0, 0.3)
            corpus, per_example = _scores(rng, metric, mean, examples)
            ids = [f"{cell['task']}-{i}" for i in range(examples)]
            texts = [f"synthetic output {i}" for i in range(examples)]
            write_predictions(run_dir, ids, texts, texts, per_example)
            added = 0 if cell["calib"] == "off" else 393_984
            record.data["params"] = {
                "total": 60_506_624 + added,
                "trainable": 60_506_624 + added,
                "trainable_pct": 100.0,
                "added": added,
                "added_pct": 100 * added / 60_506_624,
                "backbone": 60_506_624,
            }
            record.data["metrics"] = {**corpus, "train_loss": rng.uniform(1, 3)}
            record.data["metric_settings"] = {"eval_split": "test", "n_examples": examples}
            record.complete()
    return failed


def run(mode: str, device: str) -> dict[str, Any]:
    base = {
        "name": "tables",
        "title": f"Tables: make tables over {N_RESULTS:,} synthetic results",
        "method": __doc__.split("\n\n")[1].replace("\n", " "),
        "columns": ("", "python -m repcali.tables"),
    }
    case = f"{N_RESULTS:,} results.json + predictions.jsonl ({EXAMPLES[mode]} examples each)"
    if importlib.util.find_spec("repcali.tables") is None:
        return {
            **base,
            "status": "not available",
            "results": [],
            "rows": [
                {
                    "case": case,
                    "measure": "wall time",
                    "baseline": "",
                    "compared": "",
                    "result": "not available: repcali.tables does not exist yet",
                    "target": f"≤ {TARGET_S:g} s",
                    "verdict": "—",
                }
            ],
        }
    with tempfile.TemporaryDirectory(prefix="repcali-bench-") as work:
        runs_dir, out_dir = Path(work) / "runs", Path(work) / "tables"
        failed = write_synthetic_runs(runs_dir, EXAMPLES[mode])
        command = [sys.executable, "-m", "repcali.tables", "--runs", str(runs_dir), "--out", str(out_dir)]
        samples = interleave({"tables": lambda: run_command(command)}, ROUNDS[mode])["tables"]
        written = sorted(str(p.relative_to(out_dir)) for p in out_dir.rglob("*") if p.is_file())
    stats = summarize(samples)
    return {
        **base,
        "results": [{"seconds": stats, "failed_runs": failed, "examples_per_run": EXAMPLES[mode], "written": written}],
        "rows": [
            {
                "case": case,
                "measure": "wall time, fresh process",
                "baseline": "",
                "compared": f"{stats['median']:.2f} s",
                "result": f"{stats['median']:.2f} s (IQR {stats['q1']:.2f} … {stats['q3']:.2f}, n={stats['n']})",
                "target": f"≤ {TARGET_S:g} s",
                "verdict": "met" if stats["median"] <= TARGET_S else "missed",
            }
        ],
    }
