"""``train.py`` end to end as users run it, on tiny models and fixture data: through its own entry point in
this process (:func:`tests.cli.here`), and once in a process of its own (and under torchrun)."""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import pytest
from transformers import AutoConfig

from repcali.calibration import find_block
from repcali.methods import method_of
from repcali.modeling import load_model
from repcali.results import RESULTS_NAME, read_results
from tests import cli
from tests.grid import ROOT

XSUM = ROOT / "tests" / "fixtures" / "xsum"
FAST = [
    "task=xsum",
    f"task.data_files.train={XSUM}/train.jsonl",
    f"task.data_files.test={XSUM}/test.jsonl",
    "task.max_source_length=64",
    "task.max_target_length=16",
    "task.generation.num_beams=2",
    "task.generation.max_new_tokens=8",
    "task.generation.min_new_tokens=0",
    "trainer.max_steps=3",
    "trainer.logging_steps=1",
    "trainer.eval_strategy=no",  # the last model is scored; model selection has its own tests (test_selection.py)
    "model=tiny_t5",
]


def train(*overrides: str, runs_dir: Path) -> subprocess.CompletedProcess:
    return cli.here("train.py", *FAST, f"runs_dir={runs_dir}", *overrides)


def run_dir_of(process: subprocess.CompletedProcess) -> Path:
    last_line = process.stdout.strip().splitlines()[-1]
    assert "Run dir: " in last_line, process.stdout[-2000:] + process.stderr[-2000:]
    return Path(last_line.split("Run dir: ")[1])


@pytest.mark.slow
def test_run_writes_results_then_skips_then_reruns_to_identical_results(tmp_path):
    first = cli.run("train.py", *FAST, f"runs_dir={tmp_path}", "calib=on")  # the user's command, a process of its own
    assert first.returncode == 0, first.stderr[-3000:]
    run_dir = run_dir_of(first)
    assert run_dir.parent.parent.parent.name == "tiny_t5" and run_dir.parent.name == "calib-on"
    results = read_results(run_dir)
    assert results.status == "completed" and results.error is None and results.schema_version == 2
    assert set(results.metrics) >= {"rouge1", "rouge2", "rougeL", "rougeLsum", "train_loss"}
    assert all(math.isfinite(v) for v in results.metrics.values())
    assert results.metric_settings["rouge"]["use_stemmer"] is True
    assert results.metric_settings["n_examples"] == 8
    params = results.params
    assert params["added"] == 512 * 64 + 2 * 64 and params["total"] == params["backbone"] + params["added"]
    assert results.config["calib"]["enabled"] is True and results.seed == 42
    assert str(run_dir).endswith(results.identity.path)
    assert len(results.git["commit"] or "x" * 40) == 40 and results.versions["transformers"].startswith("5.")
    assert {"load_s", "data_s", "train_s", "evaluate_s", "total_s"} <= set(results.timings)
    predictions = [json.loads(line) for line in (run_dir / "predictions.jsonl").open()]
    assert len(predictions) == 8 and {"id", "prediction", "reference", "scores"} <= set(predictions[0])
    assert load_model(run_dir / "model").repcali is not None

    stamp = (run_dir / RESULTS_NAME).stat().st_mtime_ns
    second = train("calib=on", runs_dir=tmp_path)
    assert second.returncode == 0 and "Already completed" in second.stdout
    assert run_dir_of(second) == run_dir and (run_dir / RESULTS_NAME).stat().st_mtime_ns == stamp

    first_outcome = outcome(run_dir)
    third = train("calib=on", "rerun=true", runs_dir=tmp_path)  # in this process, not the first run's
    assert third.returncode == 0, third.stderr[-3000:]
    assert read_results(run_dir).status == "completed"
    archived = list(run_dir.glob("results.completed.*.json"))
    assert len(archived) == 1 and json.loads(archived[0].read_text())["started_at"] == results.started_at
    assert outcome(run_dir) == first_outcome  # deterministic across processes: metrics, predictions, weights


def outcome(run_dir: Path) -> dict:
    """What the same command must reproduce: metrics, predictions, and the saved weights, byte for byte."""
    files = ("predictions.jsonl", "model/model.safetensors", "model/repcali.safetensors")
    return {"metrics": read_results(run_dir).metrics, **{f: (run_dir / f).read_bytes() for f in files}}


@pytest.mark.slow
def test_calib_off_and_on_differ_only_in_the_block(tmp_path):
    off = read_results(run_dir_of(train("calib=off", "save_model=false", "run.threads=1", runs_dir=tmp_path)))
    on = read_results(run_dir_of(train("calib=on", "save_model=false", runs_dir=tmp_path)))
    assert off.params["added"] == 0 and on.params["added"] > 0
    assert off.params["backbone"] == on.params["backbone"]
    assert off.run_dir != on.run_dir and off.identity.baseline == on.identity.baseline  # run.threads is not identity
    # the thread count: run.threads where given, else this process's share of the cores (repcali/threads.py)
    explicit, share = off.host["threads"], on.host["threads"]
    assert (explicit["count"], explicit["from"], off.host["torch_threads"]) == (1, "run.threads", 1)
    each = share["cores"] // share["jobs"]  # a tiny model computes on one thread where its share is more
    assert (share["count"], share["from"]) == ((1, "small model") if each > 1 else (max(1, each), "share"))
    assert share["jobs"] == int(os.environ["REPCALI_JOBS"])  # the pytest-xdist workers (tests/conftest.py)


def test_default_config_composes_and_prints(tmp_path):
    process = cli.here("train.py", "--cfg", "job", "model=bart_base", "task=xsum", "calib=on")
    assert process.returncode == 0, process.stderr
    assert "name_or_path: facebook/bart-base" in process.stdout and "enabled: true" in process.stdout


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model=__no_such_model__", "error: Unknown model '__no_such_model__'. Fix: use one of bart, bart_base, "),
        ("task=xsum,nope", "error: Unknown task 'nope'. Fix: use one of aclsum, anlg, "),
        ("+sweep=glob(nope*)", "requires --multirun"),  # extended sweep syntax: Hydra's own message
        ("calib.lamda=0.5", "error: calib.lamda is not a setting of calib"),  # tests/test_validate.py: all of them
        ("calib.lam=strong", "error: calib.lam='strong' is not a number"),
        ("calib.layernorm=bogus", "error: Unknown calib.layernorm 'bogus'. Fix: use one of post_add, on_delta, none."),
    ],
)
def test_unknown_options_fail_at_composition_with_a_short_message(tmp_path, override, message):
    process = train(override, runs_dir=tmp_path)
    assert process.returncode != 0
    assert message in process.stderr
    assert "Traceback" not in process.stderr
    assert len(process.stderr.strip().splitlines()) <= 25
    assert not list(tmp_path.rglob(RESULTS_NAME))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["task.data_files.test=/nonexistent/test.jsonl"], "Data file not found: /nonexistent/test.jsonl"),
        (["task.max_train_samples=0"], "split of task 'xsum' is empty"),
        ([f"task.data_files.train={ROOT}/tests/fixtures/empty.jsonl"], "Data file is empty"),
        (["trainer.learning_rate=1e30", "trainer.max_grad_norm=0", "trainer.max_steps=6"], "Training loss became"),
        (["model.name_or_path=/nonexistent/model"], "Could not load model"),
    ],
)
def test_bad_input_fails_with_one_clear_message_and_a_failed_record(tmp_path, overrides, message):
    process = train(*overrides, runs_dir=tmp_path)
    assert process.returncode == 1
    error_lines = [line for line in process.stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1 and message in error_lines[0] and "Fix: " in error_lines[0]
    assert "Traceback" not in process.stderr
    results = read_results(run_dir_of(process))
    assert results.status == "failed" and message in results.error.message


@pytest.mark.slow
@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("calib.lam=nan", "calib.lam=nan is not a finite number"),
        ("trainer.per_device_train_batch_size=0", "trainer.per_device_train_batch_size=0 cannot train"),
        ("trainer.learning_rate=-1", "trainer.learning_rate=-1 cannot train"),
    ],
)
def test_a_config_that_cannot_run_is_refused_in_one_line_and_leaves_no_run_directory(tmp_path, override, message):
    process = train(override, runs_dir=tmp_path)
    assert process.returncode == 1
    error_lines = [line for line in process.stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1 and message in error_lines[0] and "Fix: " in error_lines[0]
    assert "Traceback" not in process.stderr and "Run dir" not in process.stdout
    assert not list(tmp_path.iterdir())  # neither the run's directory nor the folders above it


def test_a_refusal_keeps_a_directory_with_an_earlier_record_and_its_neighbours(tmp_path):
    from train import remove_unrecorded

    refused, recorded, neighbour = (tmp_path / "exp" / name / "seed1-abc" for name in ("a", "b", "c"))
    for run_dir in (refused, recorded, neighbour):
        (run_dir / ".hydra").mkdir(parents=True)
    (recorded / RESULTS_NAME).write_text("{}")
    remove_unrecorded(refused, tmp_path)
    remove_unrecorded(recorded, tmp_path)
    assert not refused.parent.exists() and (recorded / ".hydra").is_dir() and (neighbour / ".hydra").is_dir()


@pytest.mark.slow
def test_a_loss_that_turns_nan_between_logging_steps_fails_the_run_and_saves_no_checkpoint(tmp_path):
    """The loss turns NaN within 6 steps and is logged at step 10 only: before, the run ended `completed`
    with train_loss NaN, since the guard saw logged losses only."""
    process = train(
        "trainer.learning_rate=1e30",
        "trainer.max_grad_norm=0",
        "trainer.max_steps=6",
        "trainer.logging_steps=10",
        runs_dir=tmp_path,
    )
    assert process.returncode == 1
    error_lines = [line for line in process.stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1 and "Training loss became nan by step 6" in error_lines[0]
    run_dir = run_dir_of(process)
    assert read_results(run_dir).status == "failed"
    assert not list((run_dir / "checkpoints").glob("checkpoint-*"))  # checked before the end-of-training save


@pytest.mark.slow
def test_non_encoder_decoder_backbone_is_refused(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=2100)).save_pretrained(tmp_path / "gpt2")
    process = train(
        f"model.name_or_path={tmp_path / 'gpt2'}",
        f"model.tokenizer={ROOT / 'assets' / 'tiny-t5'}",
        "model.init=pretrained",
        runs_dir=tmp_path,
    )
    assert process.returncode == 1 and "is not an encoder-decoder" in process.stderr


@pytest.mark.slow
def test_a_failed_rerun_keeps_the_completed_record(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for split in ("train", "test"):
        (data / f"{split}.jsonl").write_text((XSUM / f"{split}.jsonl").read_text())
    paths = [
        f"task.data_files.train={data}/train.jsonl",
        f"task.data_files.test={data}/test.jsonl",
        "save_model=false",
    ]
    run_dir = run_dir_of(train(*paths, runs_dir=tmp_path))
    completed = (run_dir / RESULTS_NAME).read_text()
    (data / "test.jsonl").unlink()
    process = train(*paths, "rerun=true", runs_dir=tmp_path)
    assert process.returncode == 1 and read_results(run_dir).status == "failed"
    assert [p.read_text() for p in run_dir.glob("results.completed.*.json")] == [completed]


@pytest.mark.slow
def test_wandb_without_api_key_falls_back_to_offline(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_MODE", "WANDB_API_KEY")}
    env.update(HOME=str(tmp_path / "home"), WANDB_CONFIG_DIR=str(tmp_path / "wandb-config"))
    overrides = [*FAST, f"runs_dir={tmp_path / 'runs'}", "logger=wandb", "save_model=false"]
    process = cli.start("train.py", *overrides, env=env)
    assert process.wait(timeout=600) == 0, process.stderr[-3000:]  # a process of its own: W&B starts its service
    notices = [line for line in process.stdout.splitlines() if line.startswith("W&B:")]
    assert len(notices) == 1 and "no API key configured, logging offline" in notices[0]
    run_dir = run_dir_of(process)
    assert read_results(run_dir).status == "completed"
    assert list((run_dir / "wandb").glob("offline-run-*"))


@pytest.mark.slow
@pytest.mark.launchers
def test_torchrun_two_processes_on_cpu(tmp_path):
    """Distributed data parallel (gloo on CPU) through the same train.py: one record, all examples once."""
    two = ("--standalone", "--nproc_per_node=2")
    process = cli.run("torchrun", *two, "train.py", *FAST, f"runs_dir={tmp_path}", "calib=on", "save_model=false")
    assert process.returncode == 0, process.stderr[-3000:]
    results = read_results(run_dir_of(process))
    assert results.status == "completed" and results.host["world_size"] == 2
    assert results.metric_settings["n_examples"] == 8
    assert len((Path(results.run_dir) / "predictions.jsonl").read_text().splitlines()) == 8


@pytest.mark.slow
def test_lora_with_repcali_records_its_parameters_and_saves_only_what_trains(tmp_path):
    process = train("method=lora", "calib=on", runs_dir=tmp_path)
    assert process.returncode == 0, process.stderr[-3000:]
    run_dir = run_dir_of(process)
    assert run_dir.parent.parent.name == "lora" and run_dir.parent.name == "calib-on"
    config = AutoConfig.from_pretrained(ROOT / "assets" / "tiny-t5")
    attentions = config.num_layers + 2 * config.num_decoder_layers  # q and v of each, r = 8 (conf/method/lora.yaml)
    lora = 2 * attentions * 8 * (config.d_model + config.num_heads * config.d_kv)
    block = 512 * config.d_model + 2 * config.d_model
    params = read_results(run_dir).params
    assert (params["added"], params["repcali"], params["trainable"]) == (lora + block, block, lora + block)
    assert params["added_pct"] == pytest.approx(100 * (lora + block) / params["backbone"])

    saved = run_dir / "model"
    assert (saved / "adapter_config.json").is_file() and not (saved / "model.safetensors").exists()
    assert (saved / "backbone" / "model.safetensors").is_file()  # model.init=scratch: no checkpoint to reload
    reloaded = load_model(saved)
    assert method_of(reloaded)["name"] == "lora" and find_block(reloaded) is not None


@pytest.mark.slow
def test_frozen_without_calibration_evaluates_the_backbone_untrained(tmp_path):
    process = train("method=frozen", "save_model=false", runs_dir=tmp_path)
    assert process.returncode == 0, process.stderr[-3000:]
    results = read_results(run_dir_of(process))
    assert results.status == "completed" and results.params["trainable"] == 0
    assert "train_loss" not in results.metrics and math.isfinite(results.metrics["rouge1"])
