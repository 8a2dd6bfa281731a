"""A config that cannot run is refused at composition or before anything loads, in one line naming the fix."""

from __future__ import annotations

import pytest
from hydra.errors import ConfigCompositionException

from repcali.checks import check_config
from repcali.config import unknown_choice
from repcali.errors import RepCaliError
from repcali.methods import METHODS


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("calib.layernorm=pre", "Unknown calib.layernorm 'pre'. Fix: use one of post_add, on_delta, none."),
        ("calib.train=lora", "Unknown calib.train 'lora'. Fix: use one of full, frozen."),
        ("method.name=qlora", "Unknown method.name 'qlora'. Fix: use one of adapter, bitfit, frozen, full, "),
    ],
)
def test_closed_choices_fail_at_composition(compose_train, override, message):
    """Hydra refuses the value wherever it is set (a YAML file too); train.py says so in one line first."""
    with pytest.raises(ConfigCompositionException):
        compose_train(override)
    assert unknown_choice(["calib=on", override]).startswith(message)


def test_the_command_line_check_reads_sweeps_and_passes_valid_choices():
    assert unknown_choice(["calib.layernorm=post_add,pre"]).startswith("Unknown calib.layernorm 'pre'. Fix: ")
    assert unknown_choice(["calib=on", "calib.layernorm=on_delta,none", "method=lora", "calib.lam=0.5"]) is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["calib.lam=nan"], "calib.lam=nan is not a finite number. Fix: "),
        (["calib=on", "calib.lam=-inf"], "calib.lam=-inf is not a finite number. Fix: "),
        (["calib=on", "calib.num_embeddings=1"], "calib.num_embeddings < 2. Fix: "),
        (["method=lora", "+method.options.rank=4"], "method.options.rank is not an option of method=lora. Fix: "),
        (["method=adapter", "method.options.bottleneck=0"], "method=adapter: bottleneck=0 must be at least 1. Fix: "),
        (["method=lora", "calib=on", "calib.train=frozen"], "calib.train=frozen trains only the RepCali block"),
        (["+trainer.not_an_argument=1"], "trainer.not_an_argument is not a Seq2SeqTrainingArguments field. Fix: "),
        (["+trainer.learning_rat=0.1"], "Fix: use trainer.learning_rate, or a field"),
        (["+trainer.seed=3"], "trainer.seed is set by the run. Fix: remove trainer.seed; set seed=<n> instead."),
        (["trainer.per_device_train_batch_size=0"], "trainer.per_device_train_batch_size=0 cannot train. Fix: "),
        (["trainer.per_device_eval_batch_size=0"], "trainer.per_device_eval_batch_size=0 cannot train. Fix: "),
        (["trainer.gradient_accumulation_steps=0"], "trainer.gradient_accumulation_steps=0 cannot train. Fix: "),
        (["trainer.learning_rate=-1"], "trainer.learning_rate=-1 cannot train. Fix: use a number >= 0."),
        (["trainer.learning_rate=nan"], "trainer.learning_rate=nan cannot train. Fix: "),
        (["trainer.num_train_epochs=0"], "trainer.num_train_epochs=0 with no trainer.max_steps trains nothing. Fix: "),
        (["trainer.warmup_steps=-1"], "Bad trainer option: Got warmup_steps = -1"),  # the Trainer's own check
        (["trainer.eval_strategy=often"], "trainer.eval_strategy='often' is not one of no, steps, epoch"),
    ],
)
def test_a_config_that_cannot_run_is_refused_in_one_line(compose_train, tmp_path, overrides, message):
    with pytest.raises(RepCaliError) as refused:
        check_config(compose_train(*overrides), tmp_path)
    text = str(refused.value)
    assert message in text and "Fix: " in text and "\n" not in text, text


@pytest.mark.parametrize("method", METHODS)
def test_every_method_passes_with_and_without_the_block_and_nothing_is_written(compose_train, tmp_path, method):
    for calib in ("off", "on"):
        check_config(compose_train(f"method={method}", f"calib={calib}"), tmp_path)
    check_config(compose_train("trainer.num_train_epochs=0", "trainer.max_steps=3"), tmp_path)
    assert not list(tmp_path.iterdir())
