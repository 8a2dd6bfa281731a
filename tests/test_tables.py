"""``make tables`` on fixture runs written by the real writer, checked against hand computation."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from scipy import stats

from repcali.config import TrainConfig
from repcali.identity import RunIdentity
from repcali.ownership import lock_held
from repcali.results import RESULTS_NAME
from repcali.runs import PREDICTIONS_NAME, RunRecord, write_predictions
from repcali.tables import build, paper
from repcali.tables.seed_significance import CROSSED, SEEDS_ONLY
from repcali.tables.significance import bootstrap_p, example_scores, seed_differences
from tests.holder import end, hold

N_EXAMPLES = 20
RESAMPLES = 200


def write_run(
    root: Path,
    *,
    experiment: str,
    task: str,
    model: str,
    seed: int,
    calib: dict | None = None,
    method: str = "full",
    metrics: dict | None = None,
    scores: dict | None = None,
    status: str = "completed",
    primary: str = "rouge1",
    added_pct: float = 0.0,
) -> Path:
    """One run as train.py records it: RunRecord for results.json, write_predictions for the scores."""
    calib = {"name": "off", "enabled": False} if calib is None else {"name": "on", "enabled": True, **calib}
    cfg = OmegaConf.merge(
        OmegaConf.structured(TrainConfig),
        {
            "experiment_name": experiment,
            "seed": seed,
            "model": {"name": model, "name_or_path": f"org/{model}", "family": "t5"},
            "task": {"name": task, "primary_metric": primary},
            "method": {"name": method},
            "calib": calib,
        },
    )
    run_dir = root / RunIdentity.of(cfg).path
    record = RunRecord(run_dir, cfg)
    record.start()
    if status == "failed":
        record.fail(RuntimeError("CUDA out of memory"))
    elif status == "completed":
        record.results.metrics = {**metrics, "train_loss": 1.0}
        record.results.params = {"trainable_pct": 100.0, "added_pct": added_pct}
        if scores is not None:
            order = slice(None, None, -1 if calib["enabled"] else 1)  # stored in another order than the baseline
            ids = [f"ex{i}" for i in range(N_EXAMPLES)][order]
            per_example = {name: list(values)[order] for name, values in scores.items()}
            write_predictions(run_dir, ids, ["p"] * N_EXAMPLES, ["r"] * N_EXAMPLES, per_example)
        record.complete()
    return run_dir


def examples(mean: float, spread: float = 3.0) -> np.ndarray:
    """Per-example scores with the given mean (a fixed zero-mean pattern around it)."""
    pattern = np.tile([-1.0, 1.0], N_EXAMPLES // 2) * spread
    return mean + pattern


def noisy_examples(rng: np.random.Generator, mean: float, spread: float = 2.0) -> np.ndarray:
    """Per-example scores whose mean is exactly ``mean``, independent noise per run (ROUGE-like)."""
    noise = rng.normal(0.0, spread, N_EXAMPLES)
    return mean + noise - noise.mean()


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> tuple[Path, dict]:
    runs = tmp_path_factory.mktemp("runs")
    xsum = {"experiment": "main_table", "task": "xsum"}
    # bart_base: 3 seeds each way. rouge1 gains (1, 2, 0) on every example; rouge2 the same mean,
    # half the examples up and half down; bleu's per-example scores are a proxy (sentence BLEU),
    # whose mean is not the corpus value.
    for seed, base, gain in ((1, 10.0, 1.0), (2, 12.0, 2.0), (3, 14.0, 0.0)):
        off1, off2 = examples(base), examples(base / 2)
        pattern = np.tile([1.0, -1.0], N_EXAMPLES // 2) * seed
        metrics = {"rouge1": base, "rouge2": base / 2, "bleu": 5.0}
        scores = {"rouge1": off1, "rouge2": off2, "bleu": examples(3.0)}
        write_run(runs, **xsum, model="bart_base", seed=seed, metrics=metrics, scores=scores)
        write_run(runs, **xsum, model="bart_base", seed=seed, calib={},
                  metrics={"rouge1": base + gain, "rouge2": base / 2, "bleu": 5.0 + seed},
                  scores={"rouge1": off1 + gain, "rouge2": off2 + pattern, "bleu": examples(3.0 + seed)},
                  added_pct=0.5)  # fmt: skip
    # t5_small: baseline complete; RepCali seed 1 done, seed 2 failed, seed 3 never ran.
    for seed in (1, 2, 3):
        write_run(runs, **xsum, model="t5_small", seed=seed, metrics={"rouge1": 20.0 + seed})
    write_run(runs, **xsum, model="t5_small", seed=1, calib={}, metrics={"rouge1": 25.0})
    write_run(runs, **xsum, model="t5_small", seed=2, calib={}, status="failed")
    # MultiWOZ, BART-large: where the paper's deltas of unknown unit belong.
    for calib in (None, {}):
        multiwoz = {"experiment": "main_table", "task": "multiwoz", "model": "bart_large", "primary": "inform"}
        write_run(runs, **multiwoz, seed=1, calib=calib, metrics={"inform": 80.0, "success": 70.0})
    # t5_base: RepCali failed, no baseline at all.
    write_run(runs, **xsum, model="t5_base", seed=1, calib={}, status="failed")
    # GLUE comparison: RTE accuracy, two methods with and without the block, 2 seeds.
    for method, base in (("lora", 60.0), ("adapter", 62.0)):
        for seed in (1, 2):
            glue = {"experiment": "glue_comparison", "task": "rte", "model": "t5_base", "method": method}
            write_run(runs, **glue, seed=seed, metrics={"accuracy": base + seed}, primary="accuracy")
            write_run(runs, **glue, seed=seed, calib={}, metrics={"accuracy": base + 2 * seed}, primary="accuracy")
    # Ablations: a baseline, λ = 0.5 and 1.0, and the on_delta LayerNorm (λ = 1).
    ablation = {"experiment": "ablations", "task": "xsum", "model": "bart_base", "seed": 1}
    write_run(runs, **ablation, metrics={"rouge1": 30.0})
    write_run(runs, **ablation, calib={"lam": 0.5}, metrics={"rouge1": 31.0})
    write_run(runs, **ablation, calib={"lam": 1.0}, metrics={"rouge1": 32.0})
    write_run(runs, **ablation, calib={"layernorm": "on_delta"}, metrics={"rouge1": 29.0})

    out = tmp_path_factory.mktemp("tables")
    written = build(runs, out, resamples=RESAMPLES)
    records = {}
    for path in out.glob("*.csv"):
        for row in csv.DictReader(path.open()):
            records[(row["table"], row["task"], row["row"], row["metric"])] = row
    return out, {"written": written, "records": records}


def record(tables, table: str, task: str, row: str, metric: str) -> dict:
    return tables[1]["records"][(table, task, row, metric)]


def number(row: dict, key: str) -> float | None:
    return float(row[key]) if row[key] not in ("", "None") else None


def test_every_table_is_written_in_four_formats(tables):
    out, found = tables
    names = {"main_table", "glue_comparison", "lambda_ablation", "layernorm_ablation", "frozen_vs_full"}
    assert {path.name for path in found["written"]} == {f"{n}.{s}" for n in names for s in ("md", "tex", "csv", "png")}
    assert all(path.stat().st_size > 0 for path in found["written"])
    assert (out / "main_table.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for tex in out.glob("*.tex"):  # plain ASCII: compiles with pdflatex, no inputenc needed
        assert r"\begin{tabular}" in tex.read_text() and tex.read_text().isascii(), tex


def test_means_stds_and_deltas_match_hand_computation(tables):
    baseline = record(tables, "main_table", "xsum", "bart_base", "rouge1")
    assert number(baseline, "mean") == pytest.approx(12.0) and number(baseline, "std") == pytest.approx(2.0)
    assert baseline["n"] == "3" and baseline["state"] == "done"
    ours = record(tables, "main_table", "xsum", "bart_base + RepCali", "rouge1")
    assert number(ours, "mean") == pytest.approx(13.0) and number(ours, "std") == pytest.approx(math.sqrt(3))
    assert number(ours, "delta") == pytest.approx(1.0) and number(ours, "delta_std") == pytest.approx(1.0)
    assert number(ours, "added_pct") == pytest.approx(0.5)
    bleu = record(tables, "main_table", "xsum", "bart_base + RepCali", "bleu")
    assert number(bleu, "delta") == pytest.approx(2.0)


def test_the_star_is_the_seed_aware_test(tables):
    # rouge1: every example gains 1, 2, 0 in seeds 1, 2, 3. The test-set-only bootstrap finds no
    # resample near 0 (p = 1 / (B + 1)), but over seeds it is the paired t-test on (1, 2, 0): no star.
    rouge1 = record(tables, "main_table", "xsum", "bart_base + RepCali", "rouge1")
    assert number(rouge1, "p_test_set_only") == pytest.approx(1 / (RESAMPLES + 1))
    t_test = stats.ttest_1samp([1.0, 2.0, 0.0], 0.0)
    assert number(rouge1, "p_seed_aware") == pytest.approx(t_test.pvalue) and rouge1["significant"] == "False"
    interval = t_test.confidence_interval()
    assert (number(rouge1, "delta_ci_low"), number(rouge1, "delta_ci_high")) == pytest.approx(
        (interval.low, interval.high)
    )
    assert rouge1["test_method"] == CROSSED and rouge1["examples_tested"] == str(N_EXAMPLES)
    assert rouge1["test_note"] == "" and rouge1["seeds_needed"] == "10" and rouge1["seeds_needed_note"] == ""
    assert 0 <= number(rouge1, "aso_epsilon") <= 1
    # rouge2: per-example differences ±seed, mean 0 in every seed: Δ 0, p = 1 both ways.
    rouge2 = record(tables, "main_table", "xsum", "bart_base + RepCali", "rouge2")
    assert number(rouge2, "delta") == pytest.approx(0.0) and rouge2["significant"] == "False"
    assert number(rouge2, "p_seed_aware") == pytest.approx(1.0) and number(rouge2, "p_test_set_only") == 1.0
    assert rouge2["aso_epsilon"] == rouge2["seeds_needed"] == ""  # primary metric only
    # bleu: per-example proxies whose mean is not the corpus value: the per-seed t-test on (1, 2, 3).
    bleu = record(tables, "main_table", "xsum", "bart_base + RepCali", "bleu")
    assert bleu["test_method"] == SEEDS_ONLY and bleu["p_test_set_only"] != ""
    assert number(bleu, "p_seed_aware") == pytest.approx(stats.ttest_1samp([1.0, 2.0, 3.0], 0.0).pvalue)
    markdown = (tables[0] / "main_table.md").read_text()
    assert "13.00 ± 1.73 (Δ +1.00) |" in markdown and "(Δ +0.00) |" in markdown and "(Δ +2.00) |" in markdown
    assert "Tested over per-seed values only" in markdown and "have none): bart_base + RepCali: bleu." in markdown
    assert "observed Δ of rouge1" in markdown and "bart_base + RepCali → 10;" in markdown
    assert "t5_small + RepCali → unknown: needs ≥ 2 seeds" in markdown


def test_fewer_than_three_seeds_is_a_state_not_a_star(tables):
    glue = record(tables, "glue_comparison", "rte", "lora + RepCali", "accuracy")  # 2 seeds, Δ 1 and 2
    assert glue["test_note"] == "n < 3 seeds" and glue["significant"] == "False"
    assert glue["test_method"] == SEEDS_ONLY and glue["p_test_set_only"] == ""  # no predictions
    assert "63.00 ± 1.41 (Δ +1.50, n < 3 seeds)" in (tables[0] / "glue_comparison.md").read_text()
    one_seed = record(tables, "main_table", "xsum", "t5_small + RepCali", "rouge1")
    assert one_seed["p_seed_aware"] == one_seed["delta_ci_low"] == "" and one_seed["test_note"] == "n < 3 seeds"


def test_partial_failed_and_missing_cells_are_shown(tables):
    partial = record(tables, "main_table", "xsum", "t5_small + RepCali", "rouge1")
    assert partial["state"] == "partial" and partial["n"] == "1" and partial["n_failed"] == "1"
    assert number(partial, "delta") == pytest.approx(25.0 - 21.0) and partial["delta_seeds"] == "1"
    assert record(tables, "main_table", "xsum", "t5_base + RepCali", "rouge1")["state"] == "failed"
    # From the sweep's grid: a t5_base baseline, backbones and tasks with no run at all.
    assert record(tables, "main_table", "xsum", "t5_base", "rouge1")["state"] == "missing"
    assert record(tables, "main_table", "xsum", "pegasus_large + RepCali", "rouge1")["state"] == "missing"
    assert record(tables, "main_table", "csds", "mt5_base", "")["state"] == "missing"
    markdown = (tables[0] / "main_table.md").read_text()
    assert "| t5_small + RepCali | 1/3 · 1 failed | 25.00 (Δ +4.00, n < 3 seeds) |" in markdown
    assert "| t5_base + RepCali | 0/3 · 1 failed | failed |" in markdown
    assert "| t5_base | missing | missing |" in markdown
    assert "## csds" in markdown and "## cnn_dailymail" in markdown


def test_paper_numbers_side_by_side_and_as_notes(tables):
    markdown = (tables[0] / "main_table.md").read_text()
    assert "| bart_large | missing | missing [ref 45.14] |" in markdown
    assert "Lewis et al. 2020 (BART)" in markdown and "+0.11" in markdown and "backbone not stated" in markdown
    numbers = paper.load()
    assert {n.evidence for n in numbers} <= {"S", "reference"} and all(n.source for n in numbers)
    assert "more than 1 % better than LoRA" in (tables[0] / "glue_comparison.md").read_text()


def test_a_paper_number_of_unknown_unit_always_says_so(tables):
    """The summaries write MultiWOZ +4.11 / +5.37 and XSum +0.11 as "%": points or relative, unknown."""
    numbers = paper.load()
    unknown = {(n.task, n.metric) for n in numbers if n.kind == "delta"}
    assert unknown == {("multiwoz", "inform"), ("multiwoz", "success"), ("xsum", "rouge1")}
    assert all(n.unit == "unknown" for n in numbers if n.kind == "delta" or "1 % better" in n.note)
    assert all(n.unit == "points" for n in numbers if n.evidence == "reference")
    markdown = (tables[0] / "main_table.md").read_text()
    assert "[paper +4.11, unit unknown]" in markdown and "[paper +5.37, unit unknown]" in markdown
    assert "[paper +4.11]" not in markdown and "[paper +5.37]" not in markdown
    assert markdown.count("absolute points or percent relative to the baseline") == 3  # both cells' note and XSum's
    glue = (tables[0] / "glue_comparison.md").read_text()
    assert "more than 1 % better than LoRA" in glue and "unit unknown" in glue


def test_glue_comparison_rows_are_methods(tables):
    lora = record(tables, "glue_comparison", "rte", "lora + RepCali", "accuracy")
    assert number(lora, "mean") == pytest.approx(63.0) and number(lora, "delta") == pytest.approx(1.5)
    assert number(record(tables, "glue_comparison", "rte", "adapter", "accuracy"), "mean") == pytest.approx(63.5)


def test_ablation_tables_keep_the_other_options_at_their_defaults(tables):
    records = tables[1]["records"]

    def done(table: str) -> set[str]:  # seed 1 of 3: partial
        return {key[2] for key, row in records.items() if key[0] == table and row["state"] == "partial"}

    assert done("lambda_ablation") == {"bart_base", "bart_base + RepCali (λ=0.5)", "bart_base + RepCali (λ=1.0)"}
    assert number(record(tables, "lambda_ablation", "xsum", "bart_base + RepCali (λ=0.5)", "rouge1"), "delta") == 1.0
    assert done("layernorm_ablation") == {
        "bart_base",
        "bart_base + RepCali (LN=post_add)",
        "bart_base + RepCali (LN=on_delta)",
    }
    assert done("frozen_vs_full") == {"bart_base", "bart_base + RepCali (train=full)"}
    # The grid's other cells are there, missing: λ = 5 on BART-base, T5-base on αNLG.
    assert record(tables, "lambda_ablation", "xsum", "bart_base + RepCali (λ=5.0)", "rouge1")["state"] == "missing"
    assert record(tables, "frozen_vs_full", "anlg", "t5_base + RepCali (train=frozen)", "")["state"] == "missing"


def test_an_unreadable_record_is_named_and_every_other_run_still_counts(tmp_path, caplog):
    write_run(tmp_path, experiment="demo", task="xsum", model="t5_small", seed=1, metrics={"rouge1": 20.0})
    truncated = write_run(tmp_path, experiment="demo", task="xsum", model="t5_small", seed=2, metrics={"rouge1": 22.0})
    (truncated / RESULTS_NAME).write_text((truncated / RESULTS_NAME).read_text()[:300])
    written = build(tmp_path, tmp_path / "tables", resamples=RESAMPLES)
    assert [path.name for path in written] == [f"demo.{suffix}" for suffix in ("md", "tex", "csv", "png")]
    assert "| t5_small | 1/1 | 20.00 |" in (tmp_path / "tables" / "demo.md").read_text()
    assert f"Left out of the tables: {truncated / RESULTS_NAME}: not JSON" in caplog.text


def test_pairs_by_seed_and_id(tmp_path):
    def predictions(name: str, ids: list[str], values: list[float]) -> Path:
        (tmp_path / name).mkdir()
        write_predictions(tmp_path / name, ids, ["p"] * len(ids), ["r"] * len(ids), {"m": values})
        return tmp_path / name

    baseline_1 = predictions("b1", ["a", "b", "c"], [1.0, 2.0, 3.0])
    ours_1 = predictions("o1", ["c", "a", "b"], [5.0, 1.0, 4.0])  # a +0, b +2, c +2
    baseline_2 = predictions("b2", ["a", "b"], [0.0, 0.0])
    ours_2 = predictions("o2", ["b", "a"], [4.0, 2.0])  # a +2, b +4; c only in seed 1: dropped
    example_scores.cache_clear()
    differences, complete = seed_differences([(ours_1, baseline_1), (ours_2, baseline_2)], ["m"])
    assert differences[:, :, 0].tolist() == [[0.0, 2.0], [2.0, 4.0]] and not complete  # seeds × examples
    differences, complete = seed_differences([(ours_2, baseline_2), (ours_1, baseline_1)], ["m"])
    assert differences[:, :, 0].tolist() == [[4.0, 2.0], [2.0, 0.0]]  # seeds in the pairs' order; examples: b, a
    differences, complete = seed_differences([(ours_1, baseline_1)], ["m"])
    assert differences[:, :, 0].tolist() == [[2.0, 0.0, 2.0]] and complete  # c, a, b: none dropped
    assert seed_differences([(ours_1, baseline_1)], ["other"]) is None


def write_pairs(root: Path, experiment: str, model: str, off: list[float], on: list[float]) -> None:
    """RepCali and baseline runs, one per seed, whose per-example ROUGE-1 means are the given corpus values."""
    rng = np.random.default_rng(len(off))
    for seed, (base, ours) in enumerate(zip(off, on, strict=True), start=1):
        common = {"experiment": experiment, "task": "aclsum", "model": model, "seed": seed}
        write_run(root, **common, metrics={"rouge1": base}, scores={"rouge1": noisy_examples(rng, base)})
        write_run(root, **common, calib={}, metrics={"rouge1": ours}, scores={"rouge1": noisy_examples(rng, ours)})


def smoke_records(out: Path) -> dict[str, dict]:
    return {row["row"]: row for row in csv.DictReader((out / "smoke.csv").open()) if row["calibrated"] == "True"}


def test_the_issue_smoke_cell_two_seeds_has_no_star(tmp_path):
    """Issue 13: off 4.13 / 1.10, on 0.68 / 11.33 (per seed Δ −3.45 and +10.23) was printed Δ +3.39*."""
    write_pairs(tmp_path, "smoke", "tiny_t5", [4.13, 1.10], [0.68, 11.33])
    build(tmp_path, tmp_path / "tables", resamples=RESAMPLES)
    markdown = (tmp_path / "tables" / "smoke.md").read_text()
    assert "| tiny_t5 + RepCali | 2/2 | 6.00 ± 7.53 (Δ +3.39, n < 3 seeds) |" in markdown
    row = smoke_records(tmp_path / "tables")["tiny_t5 + RepCali"]
    assert number(row, "p_test_set_only") < 0.05  # the test-set-only bootstrap would still say *
    assert row["significant"] == "False" and row["test_note"] == "n < 3 seeds" and row["test_method"] == CROSSED
    assert number(row, "delta_ci_low") < 0 < number(row, "delta_ci_high")
    assert int(row["seeds_needed"]) > 3 and f"tiny_t5 + RepCali → {row['seeds_needed']}." in markdown


def test_three_seeds_a_consistent_effect_is_starred_and_a_noisy_one_is_not(tmp_path):
    write_pairs(tmp_path, "smoke", "steady", [20.0, 21.0, 19.5], [25.2, 26.0, 24.4])  # +5.2, +5.0, +4.9
    write_pairs(tmp_path, "smoke", "noisy", [4.13, 1.10, 3.00], [0.68, 11.33, 6.39])  # −3.45, +10.23, +3.39
    for seed in (1, 2, 3):  # the block changes nothing: every difference is 0, nothing to test against
        for calib in (None, {}):
            same = {"metrics": {"rouge1": 20.0}, "scores": {"rouge1": examples(20.0)}}
            write_run(tmp_path, experiment="smoke", task="aclsum", model="same", seed=seed, calib=calib, **same)
    build(tmp_path, tmp_path / "tables", resamples=RESAMPLES)
    rows = smoke_records(tmp_path / "tables")
    steady, noisy = rows["steady + RepCali"], rows["noisy + RepCali"]
    assert steady["significant"] == "True" and number(steady, "delta_ci_low") > 0 and steady["test_note"] == ""
    assert noisy["significant"] == "False" and number(noisy, "delta_ci_low") < 0 and noisy["test_note"] == ""
    assert number(noisy, "p_test_set_only") < 0.05  # only the test set's sampling: it would star it
    markdown = (tmp_path / "tables" / "smoke.md").read_text()
    assert "(Δ +5.03*)" in markdown and "(Δ +3.39) |" in markdown
    same = rows["same + RepCali"]
    assert same["significant"] == "False" and same["test_note"] == "untestable" and same["p_seed_aware"] == ""
    assert "| same + RepCali | 3/3 | 20.00 ± 0.00 (Δ +0.00†) |" in markdown and "† not testable" in markdown


def test_bootstrap_p_values():
    assert bootstrap_p(np.full(50, 0.3), resamples=99)[0] == pytest.approx(1 / 100)
    assert bootstrap_p(np.array([1.0, -1.0] * 25), resamples=99)[0] == 1.0
    rng = np.random.default_rng(1)
    noisy = np.stack([rng.normal(1.0, 1.0, 400), rng.normal(0.0, 1.0, 400)], axis=1)
    p = bootstrap_p(noisy, resamples=500)
    assert p[0] < 0.01 < 0.05 < p[1]


@pytest.mark.slow
def test_a_thousand_results_build_every_table(tmp_path):
    """1,000 runs (500 RepCali/baseline pairs, 20-example predictions): the whole build, plots included (its
    speed is a benchmark's job: benchmarks/tables_build.py).

    One pair is written by the real writer; the others are copies with another model and seed
    (writing 1,000 records through RunRecord, git and fsync included, would take longer than the build).
    """
    rng = np.random.default_rng(0)
    template = {"experiment": "main_table", "task": "xsum", "model": "template", "seed": 1}
    scores = rng.normal(20, 5, N_EXAMPLES)
    pair = [
        write_run(tmp_path, **template, metrics={"rouge1": 20.0}, scores={"rouge1": scores}),
        write_run(tmp_path, **template, calib={}, metrics={"rouge1": 20.5}, scores={"rouge1": scores + 0.5}),
    ]
    for i in range(1, 500):
        model, seed = f"model{i // 3}", i % 3 + 1
        for source in pair:
            results = json.loads((source / RESULTS_NAME).read_text())
            results.update(model=model, seed=seed, metrics={"rouge1": float(rng.normal(20, 1))})
            results["config"].update(seed=seed, model={**results["config"]["model"], "name": model})
            target = tmp_path / f"{model}-{seed}-{results['calib']}"
            target.mkdir()
            (target / RESULTS_NAME).write_text(json.dumps(results))
            (target / PREDICTIONS_NAME).write_text((source / PREDICTIONS_NAME).read_text())
    written = build(tmp_path, tmp_path / "tables")
    table = (tmp_path / "tables" / "main_table.md").read_text()
    assert len(written) == 4 and "| template + RepCali | 1/3 | 20.50 (Δ +0.50, n < 3 seeds) |" in table
    assert all(f"| model{k} + RepCali | " in table for k in range(167))  # every copied pair has its row


def test_a_running_record_whose_process_is_gone_counts_as_interrupted_and_a_live_owner_is_left_alone(tmp_path):
    demo = {"experiment": "demo", "task": "xsum", "seed": 1, "status": "running"}
    gone, alive = write_run(tmp_path, **demo, model="t5_small"), write_run(tmp_path, **demo, model="t5_base")
    end(hold(gone))  # its process was killed (SIGKILL): the record still says running
    owner = hold(alive)
    try:
        build(tmp_path, tmp_path / "tables", resamples=RESAMPLES)
        assert lock_held(alive) is True and owner.poll() is None  # the build did not disturb it
    finally:
        end(owner)
    markdown = (tmp_path / "tables" / "demo.md").read_text()
    assert "| t5_small | 0/1 · 1 interrupted | interrupted |" in markdown
    assert "| t5_base | 0/1 · 1 running | running |" in markdown
    rows = {row["row"]: row for row in csv.DictReader((tmp_path / "tables" / "demo.csv").open())}
    assert (rows["t5_small"]["n_interrupted"], rows["t5_small"]["n_running"]) == ("1", "0")


def test_unusable_predictions_and_records_are_named_by_path_and_every_run_still_counts(tmp_path, caplog):
    """Files cut short or edited by hand on disk: a build never stops on one, names each, and shows the rest."""
    rng = np.random.default_rng(0)
    pairs = {}
    for seed, (base, ours) in enumerate([(20.0, 25.2), (21.0, 26.0), (19.5, 24.4)], start=1):
        common = {"experiment": "demo", "task": "aclsum", "model": "m", "seed": seed}
        on = {"metrics": {"rouge1": ours}, "scores": {"rouge1": noisy_examples(rng, ours)}}
        off = {"metrics": {"rouge1": base}, "scores": {"rouge1": noisy_examples(rng, base)}}
        pairs[seed] = (write_run(tmp_path, **common, calib={}, **on), write_run(tmp_path, **common, **off))
    cut = pairs[1][0] / PREDICTIONS_NAME
    os.truncate(cut, cut.stat().st_size // 2)  # a kill or a full disk while it was copied
    edited = pairs[2][1] / PREDICTIONS_NAME
    rows = edited.read_text().splitlines()
    rows[3] = json.dumps({**json.loads(rows[3]), "scores": {"rouge1": "high"}})
    edited.write_text("\n".join(rows) + "\n")
    binary = pairs[3][0] / PREDICTIONS_NAME
    binary.write_bytes(b"\xff\xfe" + binary.read_bytes())
    other = {"experiment": "demo", "task": "aclsum", "model": "m2", "seed": 1, "metrics": {"rouge1": 3.0}}
    write_run(tmp_path, **other, scores={"rouge1": examples(3.0)})
    no_id = write_run(tmp_path, **other, calib={}, scores={"rouge1": examples(3.0)})
    (no_id / PREDICTIONS_NAME).write_text('{"prediction": "p", "scores": {"rouge1": 3.0}}\n')
    hand = write_run(tmp_path, experiment="demo", task="aclsum", model="m3", seed=1, metrics={"rouge1": 3.0})
    record = json.loads((hand / RESULTS_NAME).read_text())
    (hand / RESULTS_NAME).write_text(json.dumps({**record, "metrics": {"rouge1": "3.0"}}))

    build(tmp_path, tmp_path / "tables", resamples=RESAMPLES)
    reasons = {
        cut: "line 10 is not JSON",
        edited: "row 4: scores is not an object of numbers",
        binary: "cannot be read",
        no_id / PREDICTIONS_NAME: "row 1 is not an object with an id",
    }
    markdown = (tmp_path / "tables" / "demo.md").read_text()
    for path, reason in reasons.items():
        assert f"Per-example scores left out: {path}: {reason}" in caplog.text
        assert f"{path}: {reason}" in markdown
    assert f"Left out of the tables: {hand / RESULTS_NAME}: field metrics.rouge1 is str, not a number" in caplog.text
    ours = smoke_records_of(tmp_path / "tables" / "demo.csv")["m + RepCali"]
    assert number(ours, "mean") == pytest.approx(25.2) and number(ours, "delta") == pytest.approx(5.03, abs=0.01)
    assert ours["test_method"] == SEEDS_ONLY and ours["n"] == "3"  # from results.json: per-seed values
    assert "| m2 + RepCali | 1/3 | 3.00 (Δ +0.00, n < 3 seeds) |" in markdown  # seeds: the table's


def smoke_records_of(path: Path) -> dict[str, dict]:
    return {row["row"]: row for row in csv.DictReader(path.open()) if row["metric"] == "rouge1"}
