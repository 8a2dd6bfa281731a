"""The benchmarks' contract, measuring tools and summary, and the runner end to end on one real benchmark.

Nothing here asserts on speed. The other benchmarks run end to end with
``python -m benchmarks.run --mode smoke`` (minutes: fresh processes, training).
"""

from __future__ import annotations

import json
import shutil
from importlib import import_module
from pathlib import Path

import pytest
import torch

from benchmarks import calibration_overhead
from benchmarks.contract import Benchmark, Row, judged, verdict
from benchmarks.measure import cpu_peak_tensor_bytes, interleave, paired_ratio, summarize
from benchmarks.run import BENCHMARKS, run_benchmarks
from benchmarks.summary import SUMMARY_NAME, write_summary
from benchmarks.tables_build import write_synthetic_runs
from repcali.results import find_results

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


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


def test_judged_writes_median_iqr_target_and_verdict():
    stats = summarize([-1.0, 0.5, 3.0])
    assert judged(stats, "+.2f", " %", 2.0) == {
        "result": "+0.50 % (IQR -0.25 … +1.75 %, n=3)",
        "target": "≤ +2 %",
        "verdict": "met",
    }
    assert judged(summarize([0.9]), ".1f", "×", 1.0, at_most=False) == {
        "result": "0.9×",  # one sample: no IQR
        "target": "≥ 1×",
        "verdict": "missed",
    }
    assert judged(stats, ".1f", " s") == {"result": "0.5 s (IQR -0.2 … 1.8 s, n=3)"}  # no target: Row's "—"


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


def test_every_registered_benchmark_has_a_run_function():
    for name in BENCHMARKS:
        assert callable(import_module(f"benchmarks.{name}").run), name


@pytest.mark.parametrize("folder", ["quick", "gpu-h100"])
def test_committed_results_render_to_the_committed_summary(tmp_path, folder):
    """summary.md is rendered from the JSON alone: a change of format must keep the committed figures."""
    shutil.copytree(RESULTS / folder, tmp_path, dirs_exist_ok=True)
    assert {path.stem for path in tmp_path.glob("*.json")} <= set(BENCHMARKS)
    assert write_summary(tmp_path, BENCHMARKS).read_text() == (RESULTS / folder / SUMMARY_NAME).read_text()


def fake(mode: str, device: str) -> Benchmark:
    stats = summarize([1.0, 1.1, 1.3])
    row = Row("a case", "a measure", "1.00 s", "1.10 s", **judged(stats, ".2f", "×", 1.2))
    return Benchmark("Fake: ratios", f"How it\n    measures ({mode}, {device}).", [row], [{"ratio": stats}])


def broken(mode: str, device: str) -> Benchmark:
    raise RuntimeError("no such model")


def test_runner_writes_a_json_per_benchmark_and_the_summary(tmp_path):
    precision = torch.get_float32_matmul_precision()  # calibration_overhead sets it, as a GPU user would
    runs = {"calibration_overhead": calibration_overhead.run, "fake": fake, "broken": broken}
    try:
        assert run_benchmarks(runs, "smoke", "cpu", tmp_path) == 1  # one broken benchmark hides no other
    finally:
        torch.set_float32_matmul_precision(precision)
    results = {name: json.loads((tmp_path / f"{name}.json").read_text()) for name in runs}
    assert {name: result["status"] for name, result in results.items()} == {
        "calibration_overhead": "ok",
        "fake": "ok",
        "broken": "error",
    }
    for result in results.values():
        assert result["machine"]["torch_threads"] >= 1 and result["machine"]["versions"]["transformers"]
        assert result["rows"] and result["mode"] == "smoke" and result["seconds"] >= 0
    summary = (tmp_path / SUMMARY_NAME).read_text()
    assert summary.index(calibration_overhead.TITLE) < summary.index("## broken") < summary.index("## Fake: ratios")
    assert "How it measures (smoke, cpu)." in summary
    assert "| a case | a measure | 1.00 s | 1.10 s | 1.10× (IQR 1.05 … 1.20×, n=3) | ≤ 1.2× | met |" in summary
    assert "RuntimeError('no such model')" in results["broken"]["rows"][0]["result"]
    calibration = results["calibration_overhead"]["results"][0]
    assert calibration["params"]["added"] > 0
    assert calibration["peak_memory_bytes"]["on"] > calibration["peak_memory_bytes"]["off"]
    assert len(results["calibration_overhead"]["rows"]) == 4
