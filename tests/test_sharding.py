"""trainer=fsdp and trainer=zero3: the configs, where they are refused, the RepCali block under FSDP2 on
CPU (torch's fully_shard, gloo, 2 processes), and the whole Trainer path where GPUs are present."""

from __future__ import annotations

import importlib.util
import json
import os

import pytest
import torch
import transformers
from safetensors.torch import load_file

from repcali.checks import check_config
from repcali.errors import RepCaliError
from repcali.modeling import load_model
from repcali.results import read_results
from repcali.sharding import engine
from tests import cli
from tests.test_train import FAST, run_dir_of

SHARDED = {"fsdp": "fsdp", "zero3": "deepspeed"}
GPUS = torch.cuda.device_count()


@pytest.mark.parametrize("option", sorted(SHARDED))
def test_sharded_trainer_configs_compose_with_their_engine_and_precision_auto(compose_train, option):
    cfg = compose_train(f"trainer={option}")  # bf16 where the GPU has it: precision=auto (repcali/precision.py)
    assert engine(cfg.trainer) == SHARDED[option] and cfg.precision == "auto" and "bf16" not in cfg.trainer
    assert cfg.trainer.learning_rate == cfg.model.learning_rate  # the default trainer's settings underneath
    if option == "fsdp":
        assert cfg.trainer.fsdp_config.auto_wrap_policy == "TRANSFORMER_BASED_WRAP"  # model._no_split_modules
    else:
        assert cfg.trainer.deepspeed.zero_optimization.stage3_gather_16bit_weights_on_model_save is True


def test_backbone_families_name_the_blocks_fsdp_wraps():
    """The T5 family (the 3B models FSDP is for) and BART-like models list their blocks; FSDP wraps them."""
    for name in ("T5", "MT5", "Bart", "MBart", "PegasusX"):
        model_class = getattr(transformers, f"{name}ForConditionalGeneration")
        assert model_class._no_split_modules, name


@pytest.mark.parametrize("option", sorted(SHARDED))
def test_sharded_trainers_are_refused_where_they_cannot_run(compose_train, option, tmp_path):
    with pytest.raises(RepCaliError, match=rf"trainer={option} shards full fine-tuning.*Fix: method=full"):
        check_config(compose_train(f"trainer={option}", "method=lora", "calib=on"), tmp_path)
    if torch.cuda.is_available() and (option == "fsdp" or importlib.util.find_spec("deepspeed")):
        return
    with pytest.raises(RepCaliError, match="Fix:") as refused:
        check_config(compose_train(f"trainer={option}"), tmp_path)
    assert "needs GPUs" in str(refused.value) or "needs DeepSpeed" in str(refused.value)


@pytest.mark.slow
@pytest.mark.launchers
def test_fsdp2_on_cpu_calibrates_trains_generates_and_saves_the_block_whole(tmp_path):
    """accelerate turns FSDP on for GPU processes only (on CPU the Trainer would run DDP), so the engine
    itself, torch's fully_shard, runs here as accelerate applies it; the Trainer path is the GPU test below."""
    report = tmp_path / "report.json"
    two = ("--standalone", "--nproc_per_node=2")
    process = cli.run("torchrun", *two, "-m", "tests.fsdp_worker", str(report), str(tmp_path / "model"), timeout=600)
    assert process.returncode == 0, process.stderr[-3000:]
    seen = json.loads(report.read_text())
    assert seen["world_size"] == 2 and seen["shard_rows"] == 256  # each process holds half of LearnEmb
    assert seen["block_shapes"] == {
        "repcali.learn_emb.weight": [512, 64],
        "repcali.norm.weight": [64],
        "repcali.norm.bias": [64],
    }
    assert seen["calibrated"]  # the encoder's output is LN(h + λ·d), computed with the gathered block
    assert seen["block_trained"] and seen["generated"] == [4, 5]
    assert seen["reloaded_equal"]  # model/ + repcali.safetensors reload to exactly the gathered weights
    saved = load_file(tmp_path / "model" / "repcali.safetensors")
    assert saved["learn_emb.weight"].shape == (512, 64)


@pytest.mark.slow
@pytest.mark.launchers
@pytest.mark.skipif(
    GPUS == 0,
    reason="needs CUDA: accelerate turns FSDP on for GPU processes only (on CPU the Trainer runs DDP), and treats "
    "CPU processes as not distributed for DeepSpeed (TrainingArguments.world_size stays 1: with 2 processes "
    "DeepSpeed 0.19 stops at its batch check, 16 != 16 * 1 * 2)",
)
@pytest.mark.parametrize("option", sorted(SHARDED))
def test_sharded_trainer_on_gpus_completes_one_record_and_saves_the_block_whole(option, tmp_path):
    if option == "zero3" and importlib.util.find_spec("deepspeed") is None:
        pytest.skip("DeepSpeed is not installed: pip install -e '.[deepspeed]'")
    processes = f"--nproc_per_node={min(GPUS, 2)}"
    overrides = [*FAST, f"runs_dir={tmp_path}", "calib=on", f"trainer={option}", "checkpoint.every_steps=2"]
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    process = cli.run("torchrun", "--standalone", processes, "train.py", *overrides, timeout=900, env=env)
    assert process.returncode == 0, process.stderr[-3000:]
    run_dir = run_dir_of(process)
    assert read_results(run_dir).status == "completed" and len(list(tmp_path.rglob("results.json"))) == 1
    assert load_file(run_dir / "model" / "repcali.safetensors")["learn_emb.weight"].shape == (512, 64)
    assert load_model(run_dir / "model").repcali is not None
