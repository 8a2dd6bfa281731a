"""The precision policy: ``auto`` resolved per machine, explicit choices refused where they cannot run, the
trainer's own flags refused, the identity and older records, tables that never pool two precisions, and a
checkpoint never resumed in another precision than it was trained in."""

from __future__ import annotations

import json

import pytest
import torch
from omegaconf import OmegaConf

from repcali import precision
from repcali.checkpoints import CHECKPOINTS_DIR, write_manifest
from repcali.checks import check_config
from repcali.errors import RepCaliError
from repcali.identity import RunIdentity
from repcali.results import find_results, read_results
from repcali.runs import RunRecord
from repcali.tables.cells import Run, group, row_labels
from repcali.training import training_arguments
from repcali.validate import check_overrides
from tests import cli
from tests.test_runs import OFF, SCHEMA_1
from tests.test_train import FAST, run_dir_of

A100 = precision.Device("NVIDIA A100-SXM4-80GB", cuda=True, bf16=True, tf32=True)
V100 = precision.Device("Tesla V100-SXM2-32GB", cuda=True, bf16=False, tf32=False)
CPU = precision.Device("CPU", cuda=False, bf16=False, tf32=False)
no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="checks what a machine without CUDA does")


def test_auto_is_bf16_on_a_gpu_with_bf16_and_fp32_elsewhere_and_explicit_choices_run_only_where_they_can():
    assert [precision.resolve("auto", device) for device in (A100, V100, CPU)] == ["bf16", "fp32", "fp32"]
    assert [precision.resolve(choice, A100) for choice in ("fp32", "tf32", "bf16")] == ["fp32", "tf32", "bf16"]
    for device, where in ((CPU, "there is no CUDA GPU here"), (V100, "Tesla V100-SXM2-32GB has none")):
        for choice in ("bf16", "tf32"):
            with pytest.raises(RepCaliError) as refused:
                precision.resolve(choice, device)
            message = str(refused.value)
            assert f"precision={choice} needs {choice} tensor cores" in message and where in message
            assert "Fix: precision=fp32 (or precision=auto: fp32 here)" in message and "\n" not in message
    assert precision.trainer_arguments("bf16") == {"bf16": True, "fp16": False}
    assert precision.trainer_arguments("tf32") == {"bf16": False, "fp16": False}  # TF32: precision.use_tf32


@no_gpu
def test_a_machine_without_cuda_trains_in_fp32_with_tf32_off_and_refuses_bf16(compose_train, tmp_path):
    assert precision.this_device() == CPU
    before = torch.backends.fp32_precision
    args = training_arguments(compose_train(), tmp_path)
    assert (args.bf16, args.fp16, args.tf32) == (False, False, None)
    assert torch.backends.fp32_precision == before  # nothing set without CUDA: CPU matmuls as they were
    for choice in ("bf16", "tf32"):
        with pytest.raises(RepCaliError, match=f"precision={choice} needs .* Fix: precision=fp32"):
            check_config(compose_train(f"precision={choice}"), tmp_path)


def test_the_trainers_own_precision_flags_are_refused_with_the_precision_to_set(compose_train, tmp_path):
    for key, choice in (("bf16", "bf16"), ("fp16", "bf16"), ("tf32", "tf32"), ("bf16_full_eval", "bf16")):
        with pytest.raises(RepCaliError, match=f"Fix: remove trainer.{key}; set precision={choice} "):
            check_config(compose_train(f"+trainer.{key}=true"), tmp_path)
    assert "fp16 is not offered, T5 overflows in it" in check_overrides(["trainer.fp16=true"])
    assert check_overrides(["+trainer.tf32=false", "seed=1"]).startswith("trainer.tf32 is set by")
    assert "is set by" not in check_overrides(["trainer.bf16_x=1", "precision=bf16"])  # a field it is not: unknown
    assert "bf16" not in compose_train().trainer  # the default trainer no longer sets them


def test_precision_is_part_of_the_identity_and_older_records_keep_their_directory(compose_train):
    auto, fp32 = RunIdentity.of(compose_train()), RunIdentity.of(compose_train("precision=fp32"))
    assert (auto.precision, fp32.precision) == ("auto", "fp32")
    assert auto.digest != fp32.digest and auto.setting != fp32.setting and auto.baseline != fp32.baseline
    old = read_results(SCHEMA_1 / OFF)  # written before precision existed: trainer.bf16 false
    assert "precision" not in old.config and old.identity.path == OFF and old.identity.precision == "fp32"
    assert precision.recorded(old.config, old.precision) == "fp32"
    in_bf16 = {**old.config, "trainer": {**old.config["trainer"], "bf16": True}}
    assert RunIdentity.of(in_bf16).precision == "bf16" == precision.recorded(in_bf16, None)
    new = OmegaConf.to_container(compose_train(), resolve=True)
    assert precision.recorded(new, "bf16") == "bf16" and precision.recorded(new, None) == "auto (not recorded)"


def record(runs_dir, cfg, seed: int, resolved: str, rouge1: float, calib: str = "off"):
    """A completed run of ``cfg`` as the run records it, computed in ``resolved``."""
    cfg = OmegaConf.merge(cfg, {"seed": seed, "calib": {"name": calib, "enabled": calib == "on"}})
    run_dir = runs_dir / RunIdentity.of(cfg).path
    written = RunRecord(run_dir, cfg)
    written.results.precision = resolved
    written.start()
    written.results.metrics = {"rouge1": rouge1}
    written.complete()
    return run_dir


def test_tables_never_pool_runs_of_one_setting_in_two_precisions(compose_train, tmp_path):
    """precision=auto on a GPU (bf16) and on a CPU (fp32), each machine's runs folder copied under one folder
    that the tables read: one setting hash, two cells; each RepCali cell compared with its own precision's baseline."""
    cfg = compose_train("experiment_name=demo")
    for resolved, base in (("bf16", 30.0), ("fp32", 20.0)):
        for seed in (1, 2, 3):
            runs_dir = tmp_path / f"from-{resolved}-machine"
            record(runs_dir, cfg, seed, resolved, base + seed)
            record(runs_dir, cfg, seed, resolved, base + seed + (1.0 if resolved == "bf16" else -1.0), calib="on")
    runs = [Run(path, results) for path, results in find_results(tmp_path).runs]
    assert len({run.identity.setting for run in runs}) == 2  # off and on; precision does not split a setting
    cells = group(runs, ("model", "method"), lambda identity: True, None)
    assert len(cells) == 4
    for cell in cells:
        assert {run.precision for run in cell.runs} == {cell.precision} and len(cell.runs) == 3
        if cell.calibrated:
            assert cell.baseline.precision == cell.precision
            gain = 1.0 if cell.precision == "bf16" else -1.0
            assert cell.delta("rouge1").mean == pytest.approx(gain) and cell.delta("rouge1").std == 0
    labels = sorted(row_labels(cells, ("model", "method")).values())
    assert labels == ["tiny_t5 + RepCali [bf16]", "tiny_t5 + RepCali [fp32]", "tiny_t5 [bf16]", "tiny_t5 [fp32]"]


@no_gpu
def test_a_checkpoint_trained_in_bf16_is_not_resumed_in_fp32(compose_train, tmp_path):
    """A real record and a real (manifested) checkpoint, then the same command on this CPU machine."""
    cfg = compose_train(*FAST, f"runs_dir={tmp_path}")
    run_dir = tmp_path / RunIdentity.of(cfg).path
    interrupted = RunRecord(run_dir, cfg)
    interrupted.results.precision = "bf16"  # precision=auto on a GPU
    interrupted.start()
    interrupted.interrupt("stopped by SIGTERM; the same command resumes it")
    checkpoint = run_dir / CHECKPOINTS_DIR / "checkpoint-2"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": 2}))
    write_manifest(checkpoint)

    process = cli.here("train.py", *FAST, f"runs_dir={tmp_path}")
    assert process.returncode == 1, process.stdout[-2000:] + process.stderr[-2000:]
    errors = [line for line in process.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in process.stderr
    assert f"The checkpoint in {run_dir} was trained in bf16; this machine would resume it in fp32" in errors[0]
    assert f"Fix: resume it on a machine where it resolves to bf16, or delete {run_dir}/checkpoints" in errors[0]
    kept = read_results(run_dir)
    assert (kept.status, kept.precision) == ("interrupted", "bf16") and checkpoint.is_dir()  # nothing touched

    interrupted.results.precision = "fp32"  # trained here: resumed here
    interrupted._save()
    precision.refuse_other_precision(cfg, run_dir)


bf16_gpu = pytest.mark.skipif(
    not (torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)),
    reason="needs a CUDA GPU with bf16 and TF32 (Ampere or newer)",
)


@bf16_gpu
def test_tf32_is_set_for_each_run_in_one_process(compose_train, tmp_path):
    """The Trainer's own tf32 switch is applied once per process and value (an lru_cache): fp32 after tf32 after
    fp32 in one process must be IEEE fp32 again."""
    for choice, mode in (("fp32", "ieee"), ("tf32", "tf32"), ("fp32", "ieee"), ("bf16", "ieee"), ("auto", "ieee")):
        args = training_arguments(compose_train(f"precision={choice}"), tmp_path)
        assert torch.backends.fp32_precision == mode and args.bf16 == (choice in ("bf16", "auto"))


@pytest.mark.slow
@bf16_gpu
def test_each_precision_trains_on_a_gpu_records_itself_and_agrees_with_fp32(tmp_path):
    losses = {}
    for choice in ("fp32", "tf32", "bf16", "auto"):
        process = cli.here("train.py", *FAST, f"runs_dir={tmp_path}", f"precision={choice}")
        assert process.returncode == 0, process.stderr[-2000:]
        results = read_results(run_dir_of(process))
        assert results.precision == {"auto": "bf16"}.get(choice, choice)
        losses[choice] = results.metrics["train_loss"]
    assert losses["tf32"] == pytest.approx(losses["fp32"], rel=0.02)
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=0.05)
    assert losses["auto"] == pytest.approx(losses["bf16"], rel=0.01)  # the same computation, another run directory


@pytest.mark.slow
@no_gpu
def test_a_run_records_what_precision_auto_resolved_to(tmp_path):
    process = cli.here("train.py", *FAST, f"runs_dir={tmp_path}")
    assert process.returncode == 0, process.stderr[-2000:]
    results = read_results(run_dir_of(process))
    assert (results.config["precision"], results.precision) == ("auto", "fp32")
    assert "bf16" not in results.config["trainer"]
