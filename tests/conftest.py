"""Offline, CPU-only, hermetic: no test may reach the hub or W&B, or wait on a network time-out."""

import os
import tempfile

# Set before transformers / datasets / huggingface_hub are imported: they read these at import.
os.environ.update(
    HF_HUB_OFFLINE="1",
    HF_DATASETS_OFFLINE="1",
    TRANSFORMERS_OFFLINE="1",
    WANDB_MODE="disabled",
    WANDB_SILENT="true",
    TOKENIZERS_PARALLELISM="false",
    # Tiny models: one thread is fastest, and several spin-wait badly on a shared 2-core CI machine.
    OMP_NUM_THREADS="1",
    HF_DATASETS_CACHE=os.path.join(tempfile.gettempdir(), f"repcali-tests-{os.getuid()}", "datasets"),
    REPCALI_CACHE_DIR=os.path.join(tempfile.gettempdir(), f"repcali-tests-{os.getuid()}", "cache"),  # composed grids
    # where transformers copies a checkpoint's own code (the trust_remote_code tests), not ~/.cache
    HF_MODULES_CACHE=os.path.join(tempfile.gettempdir(), f"repcali-tests-{os.getuid()}", "modules"),
)

import pytest  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402

from repcali.config import PROJECT_ROOT, register  # noqa: E402
from tests.tiny import build_tiny  # noqa: E402


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory) -> dict[str, str]:
    """Tiny random encoder-decoders saved with save_pretrained, loaded back like any hub model."""
    root = tmp_path_factory.mktemp("tiny-models")
    return {family: build_tiny(family, root / family) for family in ("bart", "t5")}


@pytest.fixture(scope="session")
def tiny_family(tmp_path_factory):
    """``tiny_family(name)``: the folder of a tiny model of that family, built on first use."""
    root = tmp_path_factory.mktemp("tiny-families")
    built: dict[str, str] = {}

    def get(family: str) -> str:
        if family not in built:
            built[family] = build_tiny(family, root / family)
        return built[family]

    return get


@pytest.fixture(scope="module")
def compose_train():
    """``compose_train(*overrides)``: Hydra's compose API over conf/, the composition of ``python train.py
    <overrides>`` (``return_hydra_config=True`` adds ``hydra.*``, e.g. a sweep's grid)."""
    register()
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        yield lambda *overrides, **options: compose("train", list(overrides), **options)
