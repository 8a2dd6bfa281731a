"""The cost planner: its token and FLOP counts against a hand computation, its GPU-hours in each precision, its
MFU sources."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from repcali import plan
from repcali.compose import Composer, hydra_compose
from repcali.grid import GridPoint
from tests import cli


def resolved(*overrides: str) -> dict:
    with hydra_compose():
        return Composer().resolved(list(overrides))


def test_flops_of_t5_base_on_xsum_match_a_hand_computation():
    cost = plan.run_cost(resolved("model=t5_base", "task=xsum", "calib=on"))
    # XSum: 204,045 training examples, 3 epochs; sources 560 tokens cut at T5's 512 positions, targets 30
    # (under the task's 64); 11,334 test examples, 6 beams, 30 generated tokens (within 11..62 new tokens).
    n = 222_903_552
    train_tokens = 204_045 * 3 * (512 + 30)
    eval_tokens = 11_334 * (512 + 30 * 6)
    assert (cost.train_tokens, cost.eval_tokens) == (331_777_170, 7_843_128) == (train_tokens, eval_tokens)
    assert cost.train_flops == 6 * n * 331_777_170 == pytest.approx(4.4373e17, rel=1e-4)
    assert cost.eval_flops == 2 * n * 7_843_128
    assert cost.requested == "auto" and not cost.missing

    hours = plan.Efficiency(989e12, 0.2, 0.01, "given").gpu_hours(cost)
    assert hours == pytest.approx(
        (6 * n * train_tokens / (0.2 * 989e12) + 2 * n * eval_tokens / (0.01 * 989e12)) / 3600
    )


def test_max_steps_count_batches_and_missing_figures_are_named():
    steps = plan.run_cost(resolved("task=xsum", "trainer.max_steps=100", "trainer.gradient_accumulation_steps=2"))
    assert steps.train_tokens == 100 * 16 * 2 * (512 + 30)  # tiny_t5: batch 16; XSum sources cut at 512
    config = resolved("task=xsum")
    config["model"]["params"] = None
    assert plan.run_cost(config).missing == ["model.params"]


def test_mfu_is_measured_from_the_benchmark_on_that_gpu_else_assumed(tmp_path):
    result = {
        "device_name": "NVIDIA H100 80GB HBM3",
        "setting": {"backbone": "b", "batch": 2, "source_length": 10, "target_length": 5, "new_tokens": 3},
        "params": {"backbone": 1000},
        "step_s": {"off": {"median": 1e-9}},
        "generate_s": {"off": {"median": 1e-8}},
    }
    a100 = {**result, "device_name": "NVIDIA A100-SXM4-80GB"}  # not an A10's
    fp32 = {**result, "dtype": "fp32"}  # another precision's timing: not bf16's peak
    (tmp_path / "gpu").mkdir()
    (tmp_path / "gpu" / "calibration_overhead.json").write_text(json.dumps({"results": [result, a100, fp32]}))
    train, generate, source = plan.measured_mfu(plan.GPUS["h100"], tmp_path)
    assert train == pytest.approx(6 * 1000 * 2 * 15 / 1e-9 / 989.4e12)
    assert generate == pytest.approx(2 * 1000 * 2 * (10 + 3 * 4) / 1e-8 / 989.4e12)
    assert source.startswith("measured") and "over b in" in source  # one result: the fp32 one left out
    assert plan.measured_mfu(plan.GPUS["a10"], tmp_path) is None and plan.measured_mfu(plan.GPUS["a100"], tmp_path)
    assumed = plan.efficiency(plan.GPUS["a100"], "fp32")
    assert assumed.peak_flops == 19.5e12 and assumed.train_mfu == plan.ASSUMED_MFU["fp32", "train"]
    assert "assumed" in assumed.source


def test_peaks_per_precision_are_the_datasheets_dense_figures_and_gpus_without_them_have_none():
    h100, a100, v100 = (plan.GPUS[name] for name in ("h100", "a100", "v100"))
    assert (h100.fp32, h100.tf32, h100.bf16) == (67, 494.7, 989.4)  # 989 and 1,979 TFLOPS with sparsity, halved
    assert (a100.fp32, a100.tf32, a100.bf16) == (19.5, 156, 312)
    assert v100.tf32 is v100.bf16 is None and plan.efficiency(v100, "bf16") is None
    assert plan.resolved_on(v100, "auto") == ("fp32", "") and plan.resolved_on(h100, "auto") == ("bf16", "")
    precision, why = plan.resolved_on(v100, "bf16")
    assert precision is None and "NVIDIA V100 SXM2 has none" in why
    # an assumed tensor-core MFU is never slower than the fp32 assumption: TF32 computes what fp32 does, faster
    a10 = plan.GPUS["a10"]
    tf32, fp32 = plan.efficiency(a10, "tf32"), plan.efficiency(a10, "fp32")
    assert tf32.generate_mfu * tf32.peak_flops == pytest.approx(fp32.generate_mfu * fp32.peak_flops)


def test_report_counts_runs_shared_by_parts_once_and_prices_each_precision():
    config = resolved("model=t5_base", "task=xsum", "precision=bf16")
    point = GridPoint(("a",), OmegaConf.to_container(OmegaConf.create(config)))
    text = plan.report("demo", {"one": [point], "two": [point]}, train_mfu=0.25, generate_mfu=0.01)
    assert "one " in text and "two " in text
    total = next(line for line in text.splitlines() if line.startswith("total"))
    assert total.split()[3] == "1"  # 'total (distinct runs)' then the count
    rows = {
        line.split()[0]: line.split()
        for line in text.splitlines()
        if line.split()[:1] in (["fp32"], ["tf32"], ["bf16"])
    }
    assert rows["bf16"][1:4] == ["989.4", "0.250", "0.0100"] and "given on the command line" in " ".join(rows["bf16"])
    assert rows["fp32"][1:4] == ["67", "0.500", "0.1000"] and "assumed" in " ".join(rows["fp32"])  # not given: bf16's
    cost = plan.run_cost(config)
    fp32_hours = (cost.train_flops / (0.5 * 67e12) + cost.eval_flops / (0.1 * 67e12)) / 3600
    assert float(rows["fp32"][4].replace(",", "")) == pytest.approx(fp32_hours, abs=0.05)
    assert float(total.split()[-1].replace(",", "")) == pytest.approx(float(rows["bf16"][4].replace(",", "")))
    assert "The sweep's runs compute in bf16 on this GPU (precision=bf16: 1 run)" in text

    on_v100 = plan.report("demo", {"one": [point]}, gpu_name="v100")
    assert "Not in the first table (1 backbone × task): precision=bf16 needs bf16 tensor cores" in on_v100
    assert "tf32                 —" in on_v100 and "The 1 runs in each precision" in on_v100  # fp32 priced


def test_plan_command_prints_every_part_and_the_total():
    process = cli.here("-m", "repcali.sweeps", "plan", "smoke", "--gpu", "a100")
    assert process.returncode == 0, process.stderr[-2000:]
    assert "Sweep smoke on NVIDIA A100" in process.stdout and "total (distinct runs)      4" in process.stdout
