"""The config grid (every backbone and task file) and each task's fixture files, for the tests."""

from pathlib import Path

from omegaconf import OmegaConf

from repcali.config import TaskConfig

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
ALIASES = {"bart": "bart_large", "t5": "t5_base"}  # conf/model files that only name another
MODELS = sorted(path.stem for path in (ROOT / "conf" / "model").glob("*.yaml") if path.stem not in ALIASES)
TASKS = sorted(path.stem for path in (ROOT / "conf" / "task").glob("*.yaml"))


def _fixture_files(task: str) -> dict[str, str]:
    """The task's fixture files, ``{split: path under tests/fixtures}``: train and the split the task is scored
    on (``eval_split`` in conf/task/<task>.yaml), each named by the split or by the hub split it maps to."""
    conf = OmegaConf.merge(OmegaConf.structured(TaskConfig), OmegaConf.load(ROOT / "conf" / "task" / f"{task}.yaml"))
    files = {}
    for split in ("train", conf.eval_split):
        names = (split, conf.splits.get(split, split))
        files[split] = next(
            str(path.relative_to(FIXTURES)) for n in names for path in (FIXTURES / task).glob(f"{n}.json*")
        )
    return files


# task -> {split: fixture file}: every task but the default (ACLSum, shipped in assets/)
TASK_FILES = {task: _fixture_files(task) for task in TASKS if task != "aclsum"}


def data_overrides(task: str) -> list[str]:
    """``task.data_files.<split>=<fixture>`` overrides: the task on its local fixture."""
    return [f"task.data_files.{split}={FIXTURES / path}" for split, path in TASK_FILES[task].items()]
