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
    HF_DATASETS_CACHE=os.path.join(tempfile.gettempdir(), f"repcali-tests-{os.getuid()}", "datasets"),
)

import pytest  # noqa: E402

from tests.tiny import build_tiny  # noqa: E402


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory) -> dict[str, str]:
    """Tiny random encoder-decoders saved with save_pretrained, loaded back like any hub model."""
    root = tmp_path_factory.mktemp("tiny-models")
    return {family: build_tiny(family, root / family) for family in ("bart", "t5")}
