"""No override is silently ignored: every key of the config is a setting, every value of its type, or the run
is refused in one line naming the key, before anything is written (repcali/validate.py)."""

from __future__ import annotations

from dataclasses import is_dataclass
from pathlib import Path
from typing import get_origin, get_type_hints

import pytest
from omegaconf import OmegaConf, open_dict

from repcali.config import TrainConfig
from repcali.errors import RepCaliError
from repcali.validate import closest, validate
from tests import cli


def default_leaves() -> list[tuple[str, object]]:
    """Every leaf of the composed default config (an empty mapping or a list is a leaf), with its value."""
    from hydra import compose

    from repcali.compose import hydra_compose

    with hydra_compose():
        plain = OmegaConf.to_container(compose("train"), resolve=True, enum_to_str=True)

    def walk(node: dict, path: tuple[str, ...]):
        for key, value in node.items():
            if isinstance(value, dict) and value:
                yield from walk(value, (*path, key))
            else:
                yield ".".join((*path, key)), value

    return list(walk(plain, ()))


def wrong_value(value: object) -> str:
    """A value of another type than the leaf's (a string is converted into a number or a boolean field only
    when it spells one; a list into no scalar field)."""
    if isinstance(value, bool):
        return "maybe"
    if isinstance(value, int | float):
        return "abc"
    if isinstance(value, list | dict):
        return "5"
    return "[1,2]"  # a string, an enumeration's name, or null


def is_map(path: str) -> bool:
    """Whether ``path`` is a key inside a node whose keys are data (a ``dict`` field of the schema:
    model.language_codes, task.splits, ...), or ``trainer``'s (checked against Seq2SeqTrainingArguments)."""
    node: object = TrainConfig
    for part in path.split(".")[:-1]:
        if not is_dataclass(node):
            return True
        node = get_type_hints(node)[part]
    return get_origin(node) is dict


LEAVES = default_leaves()
CASES = [(f"{key}={wrong_value(value)}", key) for key, value in LEAVES]  # a value of another type
CASES += [  # a sibling one letter longer (lam: lamm, seed: seedd), where keys are settings
    (f"+{key}{key[-1]}=1", f"{key}{key[-1]}") for key, _ in LEAVES if not is_map(key) or key.startswith("trainer.")
]


def refused(*overrides: str, runs_dir: Path) -> str:
    """``python train.py <overrides>`` refused: a non-zero exit, at most 3 lines, nothing under runs_dir."""
    process = cli.here("train.py", f"runs_dir={runs_dir}", *overrides)
    output = (process.stdout + process.stderr).strip()
    assert process.returncode != 0, output
    assert len(output.splitlines()) <= 3 and "Traceback" not in output, output
    assert not runs_dir.exists() or not any(runs_dir.iterdir()), list(runs_dir.rglob("*"))
    return output


def test_every_leaf_of_the_default_config_refuses_a_wrong_type_and_a_misspelt_sibling(tmp_path):
    """Generated from the composed default: each leaf with a value of another type, and a sibling key one letter
    longer (with ``+``, which Hydra itself lets through), through train.py's own entry point, in this process."""
    assert len(LEAVES) > 100 and any(key.startswith("trainer.") for key, _ in LEAVES)
    failures = []
    for override, key in CASES:
        try:
            output = refused(override, runs_dir=tmp_path / "runs")
            assert key in output and "Fix: " in output, output
        except AssertionError as error:
            failures.append(f"{override}: {error}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["calib=on", "+calib.lamda=0.5"], "calib.lamda is not a setting of calib"),  # trained with λ = 1.0 before
        (["calib=on", "calib.lamda=0.5"], "Fix: use calib.lam."),
        (["trainer.max_steps=five"], "trainer.max_steps='five' is not an integer"),
        (["trainer.eval_steps=abc"], "trainer.eval_steps='abc' is not a number or null"),
        (["+trainer.lr=1e-4"], "Fix: use trainer.learning_rate, or a field"),
        (["task.generation.num_beam=2"], "Fix: use task.generation.num_beams."),
        (["-m", "calib.lam=0.5,strong"], "calib.lam='strong' is not a number"),  # every value of a sweep
        (["method=lora", "+method.options.rank=16"], "Fix: use method.options.r, or"),  # the method's check
    ],
)
def test_the_issues_overrides_are_refused_in_one_line_naming_the_key(tmp_path, overrides, message):
    output = refused(*overrides, runs_dir=tmp_path / "runs")
    assert output.startswith("error: ") and message in output, output


def test_a_key_from_a_config_file_is_checked_in_the_composed_config_and_leaves_no_run_directory(tmp_path):
    """A group file from another config dir adds ``trainer.max_steps: five``, which Hydra merges into the free
    ``trainer`` dict; the run refuses it before anything loads, and removes the directory Hydra made."""
    group = tmp_path / "conf" / "extra"
    group.mkdir(parents=True)
    (group / "bad.yaml").write_text("# @package _global_\ntrainer:\n  max_steps: five\n")
    searchpath = f"hydra.searchpath=[file://{tmp_path / 'conf'}]"
    output = refused(searchpath, "+extra=bad", runs_dir=tmp_path / "runs")
    assert "error: trainer.max_steps='five' is not an integer" in output
    sweep = cli.here("train.py", "-m", f"runs_dir={tmp_path / 'runs'}", searchpath, "+extra=bad", "seed=1,2")
    errors = [line for line in sweep.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 2 and all("trainer.max_steps='five'" in line for line in errors), sweep.stderr
    assert not [path for path in (tmp_path / "runs").rglob("*") if path.name != "multirun.yaml"]


def test_the_composed_check_closes_every_node_but_the_open_ones(compose_train):
    cfg = compose_train("calib=on")
    validate(cfg)
    for node, key in [("calib", "lamda"), ("task.selection", "metrics"), ("", "seeds"), ("run", "thread")]:
        changed = compose_train("calib=on")
        with open_dict(changed):
            OmegaConf.update(changed, f"{node}.{key}".lstrip("."), 1, force_add=True)
        with pytest.raises(RepCaliError, match=f"{f'{node}.' if node else ''}{key} is not a setting"):
            validate(changed)
    opened = compose_train("method=lora")  # maps and the method's options take any key (the method checks those)
    with open_dict(opened):
        opened.model.language_codes.fr = "fr_XX"
        opened.task.splits.extra = "dev"
        opened.method.options.anything = 1
    validate(opened)
    typed = compose_train()
    with open_dict(typed):
        typed.trainer.max_steps = "${task.name}"  # an interpolation: judged on what it resolves to
    with pytest.raises(RepCaliError, match="trainer.max_steps='aclsum' is not an integer"):
        validate(typed)


@pytest.mark.parametrize(
    ("typed", "names", "meant"),
    [
        ("lamda", ["lam", "layernorm", "train"], "lam"),  # a near spelling
        ("rank", ["r", "lora_alpha", "rank_pattern"], "r"),  # the name abbreviates what was typed
        ("lr", ["learning_rate", "local_rank"], "learning_rate"),  # ... and the reverse; ties: the order given
        ("epochs", ["seed", "num_train_epochs"], "num_train_epochs"),  # some of the name's words
        ("zzz", ["lam", "r"], None),
    ],
)
def test_did_you_mean_finds_spellings_and_abbreviations(typed, names, meant):
    assert closest(typed, names) == meant


def test_every_shipped_option_passes_the_check():
    """The check refuses nothing the project ships: each option of each group, composed (tuned λ, fsdp's
    ``fsdp: true``, the experiments), is closed and typed."""
    from repcali.compose import CONF_DIR, Composer, hydra_compose

    groups = ("model", "task", "method", "calib", "trainer", "logger", "experiment")
    options = [f"{group}={path.stem}" for group in groups for path in sorted((CONF_DIR / group).glob("*.yaml"))]
    assert len(options) > 50
    with hydra_compose():
        compose = Composer()
        for option in options:
            validate(compose([option]))
