"""A config held against its schema before anything loads: no key that nothing reads, no value of the wrong type.

Hydra's structured schema (:mod:`repcali.config`) refuses most of it itself, but not all: ``+key=value`` adds
any key (Hydra sets it under ``open_dict``), so ``+calib.lamda=0.5`` used to train with λ = 1.0 and record
``lamda: 0.5`` beside it; and ``trainer.*`` is a free dict, so ``trainer.max_steps=five`` reached the Trainer.
Where Hydra does refuse, it takes five lines or more. Here every node of the composed config is closed: a key
that is not a field of its dataclass is refused with the field it was probably meant as, and every value that
nothing else types is checked, each in one line naming the key. Nodes that are open, and why:

- ``trainer``: ``Seq2SeqTrainingArguments``' fields, passed straight to it; checked here against that
  dataclass's fields and annotated types (a table cached per transformers version: reading the dataclass
  imports torch, which a typo should not wait for).
- ``method.options``: the fields of the method's options class (``LoraConfig`` for LoRA), which only the
  method knows; checked with the method before the run loads anything (``Method.settings``).
- maps, every ``dict`` field of the schema (``model.language_codes``, ``task.splits``, ``task.dataset_files``,
  ``task.keep_rows``): their keys are data (languages, split names, columns); their values are typed.

Two checks, one judge each: :func:`check_overrides` reads the command line before Hydra composes (one line
where Hydra would print many; schema values are judged by OmegaConf, which converts them as Hydra will);
:func:`validate` reads the composed config (keys added by any route: ``+``, experiment, sweep or search files).
"""

from __future__ import annotations

import types
from collections.abc import Iterable, Mapping
from dataclasses import fields, is_dataclass
from difflib import get_close_matches
from enum import Enum
from functools import cache
from importlib.metadata import version
from os import PathLike
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException

from repcali.cache import cached, digest
from repcali.config import PROJECT_ROOT, TrainConfig
from repcali.errors import RepCaliError, one_line

OPTIONS = "method.options"  # the method's options class's fields: checked by the method (Method.settings)
TRAINER = "trainer"  # Seq2SeqTrainingArguments' fields: checked here
# Values transformers takes beyond a field's annotation: ``fsdp: true`` (conf/trainer/fsdp.yaml) is annotated str.
BEYOND_ANNOTATION = {"fsdp": ["bool"]}
_TABLE = 1  # bump when the cached table of trainer fields changes shape
_PRECISION = "precision={} (or fp32, tf32, auto: repcali/precision.py)"
# Seq2SeqTrainingArguments fields the run sets itself (a trainer.<field> would be silently replaced), and what
# sets them: each concept in one place.
RUN_OWNED = {
    "output_dir": "runs_dir=<folder>",
    "seed": "seed=<n>",
    "report_to": "logger=wandb",
    "predict_with_generate": "task.generation.*",
    "generation_config": "task.generation.*",
    "save_strategy": "checkpoint.every_minutes / checkpoint.every_steps",
    "save_steps": "checkpoint.every_steps",
    "save_total_limit": "checkpoint.keep",
    "load_best_model_at_end": "trainer.eval_strategy (not no: the best validated checkpoint is scored)",
    "metric_for_best_model": "task.selection.metric",
    "greater_is_better": "task.selection.metric (every task metric is higher-is-better)",
    "restore_callback_states_from_checkpoint": "task.selection.patience",
    "bf16": _PRECISION.format("bf16"),
    "bf16_full_eval": _PRECISION.format("bf16"),
    "tf32": _PRECISION.format("tf32"),
    "fp16": "precision=bf16 (fp16 is not offered, T5 overflows in it: huggingface/transformers#10956)",
    "fp16_full_eval": "precision=bf16 (fp16 is not offered, T5 overflows in it: huggingface/transformers#10956)",
}


def closest(key: str, names: Iterable[str]) -> str | None:
    """The name ``key`` was most likely meant as: a near spelling (``lamda``: ``lam``), else an abbreviation
    either way (``rank``: ``r``, ``lr``: ``learning_rate``), else the name holding its words (``epochs``:
    ``num_train_epochs``). String similarity alone misses the abbreviations: ``r`` is 40 % like ``rank``."""
    names = list(dict.fromkeys(names))  # in the order given (a dataclass's: its authors'), which breaks ties
    typed = key.lower()
    if near := get_close_matches(typed, names, n=1, cutoff=0.6):
        return near[0]
    words = [word for word in typed.split("_") if word]
    tests = (
        lambda name: typed.startswith(name) or _initials(typed) == name,  # the name abbreviates what was typed
        lambda name: _initials(name) == typed or name.startswith(typed),  # what was typed abbreviates the name
        lambda name: set(words) <= set(name.split("_")),  # what was typed is some of the name's words
    )
    for test in tests:
        if found := [name for name in names if test(name)]:
            return max(found, key=len) if test is tests[0] else found[0]
    return None


def _initials(name: str) -> str:
    return "".join(word[0] for word in name.split("_") if word)


def _kinds(annotation: Any) -> tuple[list[str], list[str] | None]:
    """What an annotation takes, as JSON-friendly names (int, float, bool, str, dict, list, null, any), and for
    an enumeration the values it allows (a string is converted to the enumeration, so it must be one of them)."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        parts = [_kinds(arg) for arg in get_args(annotation)]
        choices = next((choices for _, choices in parts if choices), None)
        return sorted({kind for kinds, _ in parts for kind in kinds}), choices
    if origin is Literal:
        return sorted({_kinds(type(value))[0][0] for value in get_args(annotation)}), None
    if origin is not None:
        annotation = origin  # dict[str, Any], list[str], ...
    if annotation is type(None):
        return ["null"], None
    if not isinstance(annotation, type):
        return ["any"], None
    if issubclass(annotation, Enum):
        return ["str"], [str(member.value) for member in annotation]
    for kind, python in (("bool", bool), ("int", int), ("float", float), ("str", str), ("str", PathLike)):
        if issubclass(annotation, python):
            return [kind], None
    if issubclass(annotation, Mapping) or is_dataclass(annotation):
        return ["dict"], None
    if issubclass(annotation, list | tuple | set):
        return ["list"], None
    return ["any"], None


def _fits(value: Any, kinds: list[str], choices: list[str] | None) -> bool:
    """Whether ``value``, passed as it is (no conversion: the Trainer gets it raw), is one of ``kinds``."""
    if "any" in kinds:
        return True
    if value is None:
        return "null" in kinds
    if isinstance(value, bool):
        return "bool" in kinds
    if isinstance(value, int):
        return "int" in kinds or "float" in kinds
    if isinstance(value, float):
        return "float" in kinds
    if isinstance(value, str):
        return "str" in kinds and (not choices or value in choices)
    if isinstance(value, Mapping):
        return "dict" in kinds
    return isinstance(value, list | tuple) and "list" in kinds


def _describe(kinds: list[str], choices: list[str] | None) -> str:
    names = {
        "int": "an integer",
        "float": "a number",
        "bool": "true or false",
        "str": f"one of {', '.join(choices)}" if choices else "a string",
        "dict": "a mapping",
        "list": "a list",
        "null": "null",
    }
    shown = [kind for kind in kinds if kind in names and not (kind == "int" and "float" in kinds)]
    order = list(names)
    return " or ".join(names[kind] for kind in sorted(shown, key=order.index)) or "any value"


def _shown(value: Any) -> str:
    value = value.value if isinstance(value, Enum) else value
    return repr(value) if isinstance(value, str) else str(value)


def _wrong_type(key: str, value: Any, expected: str, where: str, default: Any = None) -> RepCaliError:
    simple = isinstance(default, bool | int | float | str) and default != "???"  # "???": a value that must be set
    example = f", e.g. {key}={_shown(default)} (the default)" if simple else ""
    return RepCaliError(f"{key}={_shown(value)} is not {expected} ({where}). Fix: set {key} to {expected}{example}.")


# --- trainer.*: Seq2SeqTrainingArguments ----------------------------------------------------------------------


def trainer_fields() -> dict[str, dict[str, Any]]:
    """``Seq2SeqTrainingArguments``' init fields: ``{name: {kinds, choices, default}}``, read from the dataclass
    once per transformers version and cached on disk (:mod:`repcali.cache`), so a refusal needs no torch."""
    return cached("trainer_fields", digest(_TABLE, version("transformers")), _read_trainer_fields)


def _read_trainer_fields() -> dict[str, dict[str, Any]]:
    from transformers import Seq2SeqTrainingArguments

    try:
        hints = get_type_hints(Seq2SeqTrainingArguments)
    except (NameError, TypeError):  # a forward reference that cannot be resolved here: each field's own type
        hints = {}
    table = {}
    for spec in fields(Seq2SeqTrainingArguments):
        if spec.init:
            kinds, choices = _kinds(hints.get(spec.name, spec.type))
            default = spec.default.value if isinstance(spec.default, Enum) else spec.default
            table[spec.name] = {
                "kinds": sorted({*kinds, *BEYOND_ANNOTATION.get(spec.name, [])}),
                "choices": choices,
                "default": default if isinstance(default, bool | int | float | str) else None,
            }
    return table


def check_trainer(trainer: Mapping[str, Any]) -> None:
    """Every ``trainer.<key>`` a ``Seq2SeqTrainingArguments`` field that the run does not set itself
    (:data:`RUN_OWNED`), its value of that field's type."""
    known = trainer_fields()
    for key, value in trainer.items():
        if key in RUN_OWNED:
            raise RepCaliError(
                f"trainer.{key} is set by the run. Fix: remove trainer.{key}; set {RUN_OWNED[key]} instead."
            )
        if key not in known:
            close = f"trainer.{near}, or " if (near := closest(key, known)) else ""
            raise RepCaliError(
                f"trainer.{key} is not a Seq2SeqTrainingArguments field. Fix: use {close}a field listed in the "
                "transformers documentation of Seq2SeqTrainingArguments."
            )
        spec = known[key]
        if not _fits(value, spec["kinds"], spec["choices"]):
            where = f"Seq2SeqTrainingArguments.{key}"
            expected = _describe(spec["kinds"], spec["choices"])
            raise _wrong_type(f"trainer.{key}", value, expected, where, spec["default"])


# --- the schema: repcali.config ----------------------------------------------------------------------------------


@cache
def _hints(schema: type) -> dict[str, Any]:
    return get_type_hints(schema)


def _unknown(path: list[str], key: str, schema: type) -> RepCaliError:
    """``key`` is no field of ``schema`` (the node at ``path``): a key nothing reads would change nothing."""
    names = list(_hints(schema))
    node = ".".join(path)
    full = ".".join([*path, key])
    prefix = f"{node}." if node else ""
    if near := closest(key, names):
        fix = f"use {prefix}{near}"
    elif len(names) <= 8:
        fix = f"use one of {', '.join(prefix + name for name in names)}"
    else:
        fix = f"use a key that python train.py --cfg job lists{f' under {node}' if node else ''}"
    return RepCaliError(
        f"{full} is not a setting of {node or 'train.py'} ({schema.__name__} in repcali/config.py has no {key!r}), "
        f"so it would be ignored. Fix: {fix}."
    )


def _field(key: str) -> tuple[str, Any]:
    """Where ``key`` (``calib.lam``, ``trainer.max_steps``, ``model.language_codes.en``) lives in the schema:
    ``("trainer", field)``, ``("options", None)``, or ``("schema", (dataclass, the key below it, annotation))``."""
    schema, path = TrainConfig, []
    parts = key.split(".")
    for index, part in enumerate(parts):
        hints = _hints(schema)
        if part not in hints:
            raise _unknown(path, part, schema)
        annotation, path = hints[part], [*path, part]
        rest = parts[index + 1 :]
        where = ".".join(path)
        if where == TRAINER and rest:
            return "trainer", rest
        if where == OPTIONS and rest:
            return "options", None
        if is_dataclass(annotation) and rest:
            schema = annotation
            continue
        if rest and get_origin(annotation) is not dict:
            expected = _describe(*_kinds(annotation))
            raise RepCaliError(f"{key}: {where} is a value, not a group of settings. Fix: set {where} to {expected}.")
        return "schema", (schema, ".".join(parts[index:]), annotation)
    raise AssertionError(key)  # an empty key: the parser gives none


def _check_schema_value(key: str, value: Any, schema: type, below: str, annotation: Any) -> None:
    """Hydra converts a value into the schema's type as OmegaConf does (``"5"`` into an int field is 5):
    OmegaConf judges it here too, on an empty node of the field's dataclass."""
    node = OmegaConf.structured(schema)
    try:
        OmegaConf.update(node, below, value, merge=True)
    except OmegaConfBaseException as error:
        at = error.full_key if str(error.full_key).startswith(below) else below  # deeper in a mapping given whole
        if isinstance(error, ConfigAttributeError | ConfigKeyError):  # a group given whole, with a key it lacks
            _field(key.removesuffix(below) + at)  # raises: that key is no setting
        for part in at[len(below) :].split(".")[1:]:
            value = value.get(part) if isinstance(value, Mapping) else value
        field, *keys = at.split(".")
        for part in keys:  # inside a mapping given whole: a group's field, or a map's value (its value type)
            if is_dataclass(annotation):
                annotation = _hints(annotation).get(part, Any)
            else:
                annotation = get_args(annotation)[-1] if get_args(annotation) else Any
        default = None if keys else getattr(schema, field, None)
        expected, key = _describe(*_kinds(annotation)), key.removesuffix(below) + at
        raise _wrong_type(key, value, expected, f"{schema.__name__}.{field}", default) from None


# --- the command line --------------------------------------------------------------------------------------------


def check_overrides(arguments: list[str]) -> str | None:
    """The first override of a command line whose key is no setting or whose value is of the wrong type, as a
    one-line message; None if there is none. Config groups (``model=bart``), ``hydra.*``, deletions and what
    Hydra's parser refuses are left to Hydra; interpolations and the method's options to :func:`validate` and
    the method, which see the composed config."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import IntervalSweep
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    overrides = [argument for argument in arguments if "=" in argument and not argument.startswith("-")]
    searching = any(argument.lstrip("+").startswith("hydra.searchpath") for argument in overrides)
    for text in overrides:
        try:
            override = parser.parse_override(text)
        except HydraException:
            continue  # Hydra says what is wrong with its syntax
        key = override.key_or_group
        if override.is_delete() or override.package is not None or key.startswith("hydra") or "/" in key:
            continue
        if (PROJECT_ROOT / "conf" / key).is_dir() or (searching and "." not in key):
            continue  # a config group's option (unknown_choice checks it); or one of a searchpath's groups
        if override.is_sweep_override():
            if isinstance(override.value(), IntervalSweep):
                continue  # a search's continuous range: numbers
            values = list(override.sweep_iterator())
        else:
            values = [override.value()]
        try:
            kind, where = _field(key)
            for value in values:
                if isinstance(value, str) and "${" in value:
                    continue
                if kind == "trainer":  # trainer.<field>=value, or trainer.<field>.<key>=value into a mapping
                    name, *below = where
                    check_trainer({name: {} if below else value})
                elif kind == "schema":
                    _check_schema_value(key, value, *where)
        except RepCaliError as error:
            return str(error)
    return None


# --- the composed config -----------------------------------------------------------------------------------------


def validate(cfg: DictConfig) -> None:
    """Raise a :class:`RepCaliError` for the first key of ``cfg`` that is no field of its node, the first value
    that cannot be resolved or is missing, or a ``trainer.*`` that is no field of ``Seq2SeqTrainingArguments``
    or not of its type. Values of the schema's fields are typed by OmegaConf as Hydra composes (and as they
    resolve, here); the method's options by the method (:func:`repcali.checks.check_config`)."""
    try:
        plain = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as error:
        raise RepCaliError(f"{error.full_key} is not set. Fix: set {error.full_key}=<value>.") from None
    except OmegaConfBaseException as error:
        if isinstance(error.__cause__, RepCaliError):  # a resolver's own refusal (calib=tuned's ${tuned_lambda:})
            raise error.__cause__ from None
        key = error.full_key or "the config"
        raise RepCaliError(f"{key}: {one_line(str(error).splitlines()[0])}. Fix: correct {key}.") from None
    _closed(TrainConfig, plain, [])


def _closed(schema: type, node: Mapping[str, Any], path: list[str]) -> None:
    hints = _hints(schema)
    for key, value in node.items():
        if key not in hints:
            raise _unknown(path, key, schema)
        where = ".".join([*path, key])
        if where == TRAINER:
            check_trainer(value)
        elif is_dataclass(hints[key]) and isinstance(value, Mapping) and where != OPTIONS:
            _closed(hints[key], value, [*path, key])
