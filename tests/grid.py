"""The config grid (every backbone and task file) and each task's fixture files, for the tests."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
ALIASES = {"bart": "bart_large", "t5": "t5_base"}  # conf/model files that only name another
MODELS = sorted(path.stem for path in (ROOT / "conf" / "model").glob("*.yaml") if path.stem not in ALIASES)
TASKS = sorted(path.stem for path in (ROOT / "conf" / "task").glob("*.yaml"))

# task -> {split: fixture file}; the splits are the ones the task trains and evaluates on
TASK_FILES = {
    "xsum": {"train": "xsum/train.jsonl", "test": "xsum/test.jsonl"},
    "cnn_dailymail": {"train": "cnn_dailymail/train.jsonl", "test": "cnn_dailymail/test.jsonl"},
    "webnlg": {"train": "webnlg/train.jsonl", "test": "webnlg/test.jsonl"},
    "common_gen": {"train": "common_gen/train.jsonl", "validation": "common_gen/validation.jsonl"},
    "anlg": {"train": "anlg/train.jsonl", "validation": "anlg/validation.jsonl"},
    "multiwoz": {"train": "multiwoz/train.jsonl", "test": "multiwoz/test.jsonl"},
    "csds": {"train": "csds/train.json", "test": "csds/test.json"},
    "lcsts": {"train": "lcsts/train.jsonl", "test": "lcsts/test.jsonl"},
    "sst2": {"train": "sst2/train.jsonl", "validation": "sst2/validation.jsonl"},
    "rte": {"train": "rte/train.jsonl", "validation": "rte/validation.jsonl"},
    "mnli": {"train": "mnli/train.jsonl", "validation": "mnli/validation_matched.jsonl"},
    "cola": {"train": "cola/train.jsonl", "validation": "cola/validation.jsonl"},
}


def data_overrides(task: str) -> list[str]:
    """``task.data_files.<split>=<fixture>`` overrides: the task on its local fixture."""
    return [f"task.data_files.{split}={FIXTURES / path}" for split, path in TASK_FILES[task].items()]
