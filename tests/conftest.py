"""Offline, CPU-only, hermetic: no test may reach the hub or W&B, or wait on a network time-out."""

import os
import shutil
import tempfile

# Set before transformers / datasets / huggingface_hub are imported: they read these at import.
os.environ.update(
    HF_HUB_OFFLINE="1",
    HF_DATASETS_OFFLINE="1",
    TRANSFORMERS_OFFLINE="1",
    WANDB_MODE="disabled",
    WANDB_SILENT="true",
    TOKENIZERS_PARALLELISM="false",
    HF_DATASETS_CACHE=os.path.join(tempfile.gettempdir(), f"repcali-tests-{os.getuid()}", "datasets"),
    REPCALI_CACHE_DIR=os.path.join(tempfile.gettempdir(), f"repcali-tests-{os.getuid()}", "cache"),  # composed grids
    # where transformers copies a checkpoint's own code (the trust_remote_code tests), not ~/.cache
    HF_MODULES_CACHE=os.path.join(tempfile.gettempdir(), f"repcali-tests-{os.getuid()}", "modules"),
)

from repcali.threads import started_together, wait_policy  # noqa: E402 (loads nothing heavy)

# The product's thread policy (repcali/threads.py), as its commands apply it, not a fixed OMP_NUM_THREADS (which
# hid the collapse of concurrent runs, issue 20): waiting threads sleep (set before torch loads), and the
# pytest-xdist workers are processes started together, each told so as a launcher tells its jobs (every process
# a test starts inherits it), so that each computes on its share of the cores.
os.environ.update(wait_policy(os.environ))
os.environ.update(started_together(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))

import pytest  # noqa: E402
from hydra import compose  # noqa: E402

from repcali.compose import hydra_compose  # noqa: E402

BUILT = ".built"  # written last: a folder without it was cut short (a worker killed mid-build) and is rebuilt


@pytest.fixture(scope="session")
def tiny_family(tmp_path_factory):
    """``tiny_family(name)``: the folder of a tiny random model of that family (and its tokenizer), saved with
    save_pretrained and loaded back like any hub model; built on first use, once per test run (the
    pytest-xdist workers share one folder, a file lock each)."""
    from filelock import FileLock

    from tests.tiny import build_tiny

    shared = tmp_path_factory.getbasetemp()
    root = (shared.parent if "PYTEST_XDIST_WORKER" in os.environ else shared) / "tiny-models"  # popen-gw<n>/..
    root.mkdir(exist_ok=True)

    def get(family: str) -> str:
        directory = root / family
        with FileLock(root / f"{family}.lock"):
            if not (directory / BUILT).is_file():
                shutil.rmtree(directory, ignore_errors=True)
                build_tiny(family, directory)
                (directory / BUILT).touch()
        return str(directory)

    return get


@pytest.fixture(scope="session")
def tiny_dirs(tiny_family) -> dict[str, str]:
    """The tiny BART and T5 (see ``tiny_family``) by family."""
    return {family: tiny_family(family) for family in ("bart", "t5")}


@pytest.fixture(scope="module")
def compose_train():
    """``compose_train(*overrides)``: Hydra's compose API over conf/, the composition of ``python train.py
    <overrides>`` (``return_hydra_config=True`` adds ``hydra.*``, e.g. a sweep's grid)."""
    with hydra_compose():
        yield lambda *overrides, **options: compose("train", list(overrides), **options)
