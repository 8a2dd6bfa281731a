"""The benchmarks' measuring tools, and the runner end to end in its smallest mode. Nothing here asserts on speed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from benchmarks.measure import cpu_peak_tensor_bytes, interleave, paired_ratio, verdict
from benchmarks.run import BENCHMARKS
from benchmarks.tables import write_synthetic_runs
from repcali.results import find_results
from tests import cli


def test_interleave_rotates_which_variant_goes_first():
    calls = []
    samples = interleave({"a": lambda: calls.append("a") or 1.0, "b": lambda: calls.append("b") or 2.0}, 3, warmup=1)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]
    assert samples == {"a": [1.0, 1.0, 1.0], "b": [2.0, 2.0, 2.0]}
    ratio = paired_ratio([2.0, 3.0, 8.0], [1.0, 1.0, 2.0])
    assert ratio["median"] == 3.0 and ratio["n"] == 3 and ratio["min"] == 2.0


def test_verdict_says_unresolved_when_the_noise_spans_the_target():
    assert verdict({"median": 1.01, "q1": 0.99, "q3": 1.05}, 1.02) == "met"
    assert verdict({"median": 1.03, "q1": 1.01, "q3": 1.05}, 1.02).startswith("unresolved")
    assert verdict({"median": 1.04, "q1": 1.03, "q3": 1.05}, 1.02) == "missed"
    assert verdict({"median": 0.98, "q1": 0.95, "q3": 0.99}, 1.0, at_most=False) == "missed"
    assert verdict({"median": 0.98, "q1": 0.95, "q3": 1.01}, 1.0, at_most=False).startswith("unresolved")


def test_cpu_peak_counts_every_live_tensor_byte():
    kept = []

    def step():
        a = torch.ones(1000, 250)  # 1 MB
        b = torch.ones(1000, 500)  # 2 MB, both alive: 3 MB
        del a, b
        kept.append(torch.ones(1000, 125))  # 0.5 MB, alone

    assert cpu_peak_tensor_bytes(step) == 3_000_000


def test_synthetic_results_use_the_real_layout(tmp_path):
    failed = write_synthetic_runs(tmp_path, examples=5, n=12)
    runs = find_results(tmp_path).runs
    assert len(runs) == 12
    assert sum(results.status == "failed" for _, results in runs) == failed
    for run_dir, results in runs:
        assert run_dir == Path(results.run_dir) == tmp_path / results.identity.path
        if results.status == "completed":
            lines = (run_dir / "predictions.jsonl").read_text().splitlines()
            assert len(lines) == 5 and set(json.loads(lines[0])["scores"]) <= set(results.metrics)


@pytest.mark.slow
def test_runner_writes_a_json_per_benchmark_and_the_summary(tmp_path):
    process = cli.run("-m", "benchmarks.run", "--mode", "smoke", "--out", str(tmp_path))
    assert process.returncode == 0, process.stderr[-3000:]
    summary = (tmp_path / "summary.md").read_text()
    for name in BENCHMARKS:
        result = json.loads((tmp_path / f"{name}.json").read_text())
        assert result["status"] in ("ok", "not available"), result.get("error")
        assert result["machine"]["torch_threads"] >= 1 and result["machine"]["versions"]["transformers"]
        assert result["rows"] and result["title"] in summary
    calibration = json.loads((tmp_path / "calibration_overhead.json").read_text())["results"][0]
    assert calibration["params"]["added"] > 0
    assert calibration["peak_memory_bytes"]["on"] > calibration["peak_memory_bytes"]["off"]
