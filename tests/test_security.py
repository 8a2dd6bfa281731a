"""Secrets never reach a run's files; a checkpoint's own code runs only when a model config says so;
weights load from safetensors, and pickles only as tensors."""

from __future__ import annotations

import ast
import json
import logging
import os
import shutil
import signal
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file

from repcali.config import ModelConfig
from repcali.errors import RepCaliError
from repcali.modeling import load_backbone
from repcali.redact import REDACTED, find_secrets, redact
from repcali.results import read_results
from tests.test_checkpoints import ENV, interrupt, train
from tests.test_train import ROOT

SECRETS = {
    "WANDB_API_KEY": "dummy0wandb0key0123456789abcdef01234567",
    "HF_TOKEN": "hf_dummyTOKENabcdefghijklmnopqrstuvwxyz",
}


def files_holding(root: Path, *secrets: str) -> list[str]:
    """Every file under ``root`` whose bytes contain one of ``secrets``."""
    needles = [secret.encode() for secret in secrets]
    return [str(p) for p in root.rglob("*") if p.is_file() and any(n in p.read_bytes() for n in needles)]


def test_redaction_by_key_name_override_and_environment_value(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SECRETS["HF_TOKEN"])
    config = {
        "trainer": {"hub_token": "abc", "learning_rate": 0.1, "pad_token_id": 0},
        "logger": {"api_key": None, "tags": [f"x-{SECRETS['HF_TOKEN']}"], "entity": "team"},
        "task": {"new_tokens": ["<H>"], "generation": {"max_new_tokens": 8}},
        "overrides": ["+trainer.hub_token=abc", "calib=on"],
    }
    assert find_secrets(config) == ["trainer.hub_token", "logger.tags.0", "trainer.hub_token"]
    assert redact(config) == {
        "trainer": {"hub_token": REDACTED, "learning_rate": 0.1, "pad_token_id": 0},
        "logger": {"api_key": None, "tags": [f"x-{REDACTED}"], "entity": "team"},
        "task": {"new_tokens": ["<H>"], "generation": {"max_new_tokens": 8}},
        "overrides": [f"+trainer.hub_token={REDACTED}", "calib=on"],
    }


def test_no_shipped_config_looks_like_a_secret(compose_train):
    for overrides in ([], ["logger=wandb", "model=mbart_large_50", "task=webnlg", "method=lora", "calib=on"]):
        assert find_secrets(OmegaConf.to_container(compose_train(*overrides), resolve=True)) == []


@pytest.mark.slow
def test_secrets_in_the_environment_never_reach_a_runs_files(tmp_path):
    """With W&B logging offline: every file of a killed run (checkpoints included), then of its completion."""
    env = {k: v for k, v in ENV.items() if k != "WANDB_MODE"}
    env.update(SECRETS, HOME=str(tmp_path / "home"), WANDB_CONFIG_DIR=str(tmp_path / "wandb-config"))
    runs, wandb = tmp_path / "runs", ["logger=wandb", "logger.mode=offline"]
    run_dir = interrupt(runs, signal.SIGKILL, 4, *wandb, env=env)
    assert list((run_dir / "checkpoints").glob("checkpoint-*/training_args.bin"))
    assert list((run_dir / "wandb").glob("offline-run-*")) and (run_dir / ".hydra" / "config.yaml").is_file()
    assert files_holding(tmp_path, *SECRETS.values()) == []

    process = train(runs, *wandb, env=env)
    assert process.returncode == 0, process.stderr[-3000:]
    assert read_results(run_dir).status == "completed"
    assert files_holding(tmp_path, *SECRETS.values()) == []


@pytest.mark.slow
def test_a_secret_in_a_config_file_is_refused_and_redacted_where_the_config_is_written(tmp_path):
    token = "dummy0hub0token0from0a0config0file"
    local = tmp_path / "conf" / "local"
    local.mkdir(parents=True)
    (local / "default.yaml").write_text(f"# @package _global_\ntrainer:\n  hub_token: {token}\n")
    process = train(tmp_path / "runs", "--config-dir", str(tmp_path / "conf"))
    assert process.returncode == 1
    error_lines = [line for line in process.stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1 and "The config holds a secret at trainer.hub_token" in error_lines[0]
    assert "Fix: remove it and set it in the environment instead" in error_lines[0]
    assert not list((tmp_path / "runs").rglob("*.*"))  # refused before the run: no record, no .hydra/ left
    assert token not in process.stdout + process.stderr


def test_a_secret_on_the_command_line_is_refused_before_anything_is_written(tmp_path):
    token = SECRETS["HF_TOKEN"]
    for override in (f"+trainer.hub_token={token}", f"logger.tags=[{token}]"):
        process = train(tmp_path / "runs", override, env={**ENV, **SECRETS})
        assert process.returncode == 1
        assert process.stderr.startswith("error: The command line holds a secret at ")
        assert token not in process.stdout + process.stderr
        assert not (tmp_path / "runs").exists()


def _tiny_checkpoint(tiny_dirs, tmp_path: Path) -> Path:
    directory = tmp_path / "model"
    shutil.copytree(tiny_dirs["t5"], directory)
    return directory


def _model_cfg(path: Path, **options):
    return OmegaConf.structured(ModelConfig(name="tiny", name_or_path=str(path), family="t5", **options))


def test_a_checkpoints_own_code_runs_only_when_its_model_config_allows_it(tiny_dirs, tmp_path, caplog):
    directory = _tiny_checkpoint(tiny_dirs, tmp_path)
    marker = tmp_path / "code-ran"
    config = json.loads((directory / "config.json").read_text())
    config.update(
        model_type="remote_t5",
        auto_map={
            "AutoConfig": "configuration_remote.RemoteConfig",
            "AutoModelForSeq2SeqLM": "modeling_remote.Remote",
        },
    )
    (directory / "config.json").write_text(json.dumps(config))
    (directory / "configuration_remote.py").write_text(
        f"from pathlib import Path\nfrom transformers import T5Config\nPath({str(marker)!r}).touch()\n\n\n"
        "class RemoteConfig(T5Config):\n    model_type = 'remote_t5'\n"
    )
    (directory / "modeling_remote.py").write_text(
        "from transformers import T5ForConditionalGeneration\n\nfrom .configuration_remote import RemoteConfig\n\n\n"
        "class Remote(T5ForConditionalGeneration):\n    config_class = RemoteConfig\n"
    )
    with pytest.raises(RepCaliError, match=r"needs its own Python code.*Fix: .*trust_remote_code: true"):
        load_backbone(_model_cfg(directory, init="pretrained"))
    assert not marker.exists()  # refused at once: no prompt, no code run

    with caplog.at_level(logging.WARNING, logger="repcali"):
        model, _ = load_backbone(_model_cfg(directory, init="pretrained", trust_remote_code=True))
    assert type(model).__name__ == "Remote" and marker.exists()
    assert "model.trust_remote_code=true: running the Python code that" in caplog.text


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def test_weights_load_from_safetensors_and_a_pickle_never_runs_code(tiny_dirs, tmp_path):
    directory = _tiny_checkpoint(tiny_dirs, tmp_path)
    marker = tmp_path / "code-ran"
    torch.save({"shared.weight": _RunsCode(marker)}, directory / "pytorch_model.bin")
    model, _ = load_backbone(_model_cfg(directory, init="pretrained"))
    expected = load_file(directory / "model.safetensors")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in expected.items()) and not marker.exists()

    (directory / "model.safetensors").unlink()
    with pytest.raises(RepCaliError, match="a pickle that holds more than tensors"):
        load_backbone(_model_cfg(directory, init="pretrained"))
    assert not marker.exists()


def test_every_torch_load_in_the_project_is_weights_only():
    """A pickle can run code when loaded; only weights_only=True refuses it (transformers' own loads do)."""
    unsafe = []
    for path in [ROOT / "train.py", *(ROOT / "repcali").rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "torch.load":
                keywords = {k.arg: getattr(k.value, "value", None) for k in node.keywords}
                if keywords.get("weights_only") is not True:
                    unsafe.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert unsafe == []
