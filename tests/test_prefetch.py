"""prefetch: offline (as every test is), `smoke`'s local assets pass and `main_table` is refused at once, naming
every asset it lacks; a backbone in the Hugging Face cache is checked from it; a split off its stats, an empty
reference, a column the task misses or a tokenizer that misreads the task's language fails its item; an
unreachable hub is treated as offline without waiting on it."""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
from pathlib import Path

import datasets.config
import huggingface_hub.constants
import pytest

from repcali import prefetch
from repcali.errors import RepCaliError
from tests import cli
from tests.grid import FIXTURES, ROOT

# Read the offline switch when imported: imported here, under conftest's offline environment, they are offline
# also inside cli.here (which runs a command with an environment of its own).
assert huggingface_hub.constants.HF_HUB_OFFLINE and datasets.config.HF_HUB_OFFLINE


def test_prefetch_smoke_checks_the_local_assets_and_passes():
    process = cli.here("-m", "repcali.sweeps", "prefetch", "smoke")
    assert process.returncode == 0, process.stderr[-2000:]
    lines = process.stdout.splitlines()
    assert lines[0].startswith("# offline (HF_HUB_OFFLINE=1): nothing is downloaded")
    rows = {line.split()[1]: line for line in lines if line.startswith(("model ", "data "))}
    assert set(rows) == {"tiny_t5", "aclsum"}  # 4 runs, one backbone and one task
    assert "ok: T5ForConditionalGeneration, float32, 0.4M parameters" in rows["tiny_t5"]
    assert "ok: train 300 (= stats), test 300 (= stats), validation 150 (= stats)" in rows["aclsum"]
    data = sum(path.stat().st_size for path in (ROOT / "assets" / "aclsum").glob("*.jsonl"))
    model = sum(path.stat().st_size for path in (ROOT / "assets" / "tiny-t5").rglob("*") if path.is_file())
    assert prefetch._size(data) in rows["aclsum"]
    assert lines[-1].split()[:3] == ["total", "on", "disk"] and prefetch._size(data + model) in lines[-1]


def test_prefetch_main_table_is_refused_at_once_naming_every_missing_asset():
    """Nothing of the main table is in the tests' cache: one line names each hub repo, and CSDS's absent
    files, before anything is loaded or any network time-out is waited on."""
    configs = prefetch.sweep_configs("main_table")  # composed once and cached on disk (repcali/grid.py)
    echoed = []
    with pytest.raises(RepCaliError) as caught:  # refused before any load: no download tried, no time-out waited on
        prefetch.prefetch(configs, again="main_table", echo=echoed.append)
    message = str(caught.value)
    assert echoed == [
        "# offline (HF_HUB_OFFLINE=1): nothing is downloaded; the Hugging Face cache and local files are checked"
    ]  # no table: nothing was loaded
    repos = {config["model"]["name_or_path"] for config in configs}
    datasets = {config["task"]["dataset"] for config in configs if config["task"]["dataset"]}
    assert len(repos) == 25 and all(repo in message for repo in repos | datasets)
    assert "data csds: neither task.dataset nor task.data_files" in message and "\n" not in message
    assert "Fix: run python -m repcali.sweeps prefetch main_table where huggingface.co can be reached" in message


def test_prefetch_of_one_run_refuses_in_one_line_with_its_command():
    process = cli.here("-m", "repcali.sweeps", "prefetch", "--run", "model=bart", "task=xsum")
    assert process.returncode == 1 and process.stderr.count("\n") == 1, process.stderr
    assert process.stderr.startswith(
        "error: models not in the cache: facebook/bart-large; datasets not in the cache: "
    )
    assert "prefetch --run model=bart task=xsum where" in process.stderr


def test_a_split_within_the_tolerance_of_its_stats_passes_and_one_beyond_fails():
    """ACLSum ships 300 training rows: stats of 302 are within 1 % (shown), 400 test rows 25 % off."""
    configs = prefetch.run_configs(["task.stats.train=302", "task.stats.test=400"])
    echoed = []
    with pytest.raises(RepCaliError, match=r"^1 of 2 assets failed their check: data aclsum \(local files\)\. Fix:"):
        prefetch.prefetch(configs, again="--run", echo=echoed.append)
    row = next(line for line in echoed if line.startswith("data aclsum"))
    assert "FAIL: test has 300 examples, stats say 400 (-25.0%)" in row and "train 300 (stats 302: -0.66%)" in row
    assert next(line for line in echoed if line.startswith("model tiny_t5")).endswith("0.4M parameters")


def test_an_empty_reference_and_a_column_the_formatter_misses_fail_their_items(tmp_path):
    rows = [json.loads(line) for line in (FIXTURES / "xsum" / "test.jsonl").read_text().splitlines()]
    empty, no_summary = tmp_path / "empty.jsonl", tmp_path / "no_summary.jsonl"
    empty.write_text(
        "".join(json.dumps({**row, "summary": " " if i == 2 else row["summary"]}) + "\n" for i, row in enumerate(rows))
    )
    no_summary.write_text("".join(json.dumps({"document": row["document"], "id": row["id"]}) + "\n" for row in rows))
    validation = FIXTURES / "xsum" / "validation.jsonl"
    xsum = ["task=xsum", f"task.data_files.test={empty}", f"task.data_files.validation={validation}"]
    configs = [
        *prefetch.run_configs([*xsum, f"task.data_files.train={FIXTURES / 'xsum' / 'train.jsonl'}"]),
        *prefetch.run_configs([*xsum, f"task.data_files.train={no_summary}"]),
    ]
    echoed = []
    with pytest.raises(RepCaliError, match=r"^2 of 3 assets failed their check: data xsum .*, data xsum "):
        prefetch.prefetch(configs, again="--run", echo=echoed.append)
    first, second = (line for line in echoed if line.startswith("data xsum"))
    assert "test: 1 of 8 examples have an empty reference" in first
    assert "train has 16 examples, stats say 204,045" in first  # the fixture is not the published data
    assert "FAIL: train lacks ['summary'], which the task reads (it has ['document', 'id'])" in second


def test_an_unreachable_hub_is_treated_as_offline_without_waiting(monkeypatch):
    """The endpoint a closed local port: refused at once, so prefetch goes offline (every library) and checks
    the local assets instead of waiting on time-outs."""
    constants = huggingface_hub.constants
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free once closed: nobody listens there
    for variable in (*prefetch.OFFLINE_VARIABLES, "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", False)
    echoed = []
    verdicts = prefetch.prefetch(prefetch.run_configs([]), again="--run", echo=echoed.append)
    assert (
        echoed[0] == "# 127.0.0.1 unreachable within 3 s: nothing is downloaded; the Hugging Face cache and "
        "local files are checked"
    )
    assert constants.HF_HUB_OFFLINE is True and datasets.config.HF_HUB_OFFLINE is True
    assert [verdict.ok for verdict in verdicts] == [True, True]


def test_a_backbone_whose_tokenizer_misreads_its_tasks_language_fails(tiny_family, tmp_path):
    """fnlp's Chinese BART as published (no tokenizer class named) with model.tokenizer_class unset: AutoTokenizer
    reads it as BART's byte-level BPE, which finds no token in Chinese text."""
    folder = tmp_path / "bart-base-chinese"
    shutil.copytree(tiny_family("bart_chinese"), folder)
    (folder / "tokenizer.json").unlink()
    config = json.loads((folder / "tokenizer_config.json").read_text())
    del config["tokenizer_class"]
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    lcsts = [f"task.data_files.{split}={FIXTURES / 'lcsts' / f'{split}.jsonl'}" for split in ("train", "test")]
    overrides = ["model=bart_base_chinese", f"model.name_or_path={folder}", "model.tokenizer_class=null", "task=lcsts"]
    echoed = []
    with pytest.raises(RepCaliError, match=r"failed their check: model bart_base_chinese"):
        prefetch.prefetch(prefetch.run_configs([*overrides, *lcsts]), again="--run", echo=echoed.append)
    row = next(line for line in echoed if line.startswith("model bart_base_chinese"))
    assert "FAIL: RobertaTokenizer reads a zh sentence as 0 tokens, 0 unknown; Fix: name the tokenizer" in row


def _as_downloaded(folder: Path, cache: Path, repo: str) -> int:
    """``folder``'s files laid out as huggingface_hub downloads a repo (blobs, a snapshot of links to them, the
    main ref); their bytes."""
    root, commit = cache / f"models--{repo.replace('/', '--')}", "0" * 40
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    (root / "snapshots" / commit).mkdir(parents=True)
    (root / "blobs").mkdir()
    for path in folder.iterdir():
        if path.is_file() and not path.name.startswith("."):
            data = path.read_bytes()
            blob = hashlib.sha256(data).hexdigest()
            (root / "blobs" / blob).write_bytes(data)
            (root / "snapshots" / commit / path.name).symlink_to(f"../../blobs/{blob}")
    return sum(blob.stat().st_size for blob in (root / "blobs").iterdir())


def test_a_backbone_in_the_hugging_face_cache_is_checked_offline_and_sized_from_it(tiny_family, tmp_path, monkeypatch):
    """A compute node after prefetch: the hub id resolves from the cache alone, and its size is the cache's."""
    repo = "repcali-tests/tiny-t5"
    size = _as_downloaded(Path(tiny_family("t5")), tmp_path / "hub", repo)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    echoed = []
    configs = prefetch.run_configs(["model=t5_small", f"model.name_or_path={repo}"])  # its weights too
    verdicts = prefetch.prefetch(configs, "--run", echo=echoed.append)
    assert [verdict.ok for verdict in verdicts] == [True, True] and verdicts[0].size == size
    row = next(line for line in echoed if line.startswith(f"model t5_small ({repo})"))
    assert prefetch._size(size) in row and "ok: T5ForConditionalGeneration, float32" in row
