"""Grid points: composed once, cached on disk by the content of conf/, equal to a fresh composition; the cache
computes an entry once when processes miss it at once."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from repcali import cache, compose, grid
from tests.grid import ROOT


@pytest.fixture
def conf(tmp_path, monkeypatch):
    """A copy of conf/ (its links to experiments/ and sweeps/ kept) to edit, and an empty cache."""
    for folder in ("conf", "experiments", "sweeps"):
        shutil.copytree(ROOT / folder, tmp_path / folder, symlinks=True)
    monkeypatch.setattr(compose, "CONF_DIR", tmp_path / "conf")
    monkeypatch.setenv("REPCALI_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "conf"


def edit(path, old: str, new: str) -> None:
    path.write_text(path.read_text().replace(old, new))


def test_cached_points_equal_a_fresh_composition_and_follow_edits_of_conf(conf, monkeypatch):
    overrides = ["trainer.max_steps=5"]
    first = grid.points("smoke", overrides)  # composed now (a miss returns what it composed)
    assert len(first) == 4
    assert [point.identity.calib for point in first] == ["off", "on", "off", "on"]
    assert {point.config["trainer"]["max_steps"] for point in first} == {5}

    composed = grid.compose_points
    monkeypatch.setattr(grid, "compose_points", lambda *args: pytest.fail("composed again"))
    assert grid.points("smoke", overrides) == first  # from the cache
    monkeypatch.setattr(grid, "compose_points", composed)

    edit(conf / "sweep" / "smoke.yaml", "seed: 1,2", "seed: 1,2,3")  # conf/sweep links to sweeps/
    assert len(grid.points("smoke", overrides)) == 6
    edit(conf / "trainer" / "default.yaml", "logging_steps: 10", "logging_steps: 7")
    edited = grid.points("smoke", overrides)
    assert {point.config["trainer"]["logging_steps"] for point in edited} == {7}
    assert edited[0].identity.digest != first[0].identity.digest


def test_a_corrupt_cache_file_is_ignored_and_rewritten(conf):
    points = grid.points("smoke")
    (stored,) = (conf.parent / "cache").glob("grid-*.json")
    stored.write_text(stored.read_text()[:100])
    assert grid.points("smoke") == points
    assert len(json.loads(stored.read_text())["value"]) == 4


def test_the_cache_lives_where_the_environment_says(monkeypatch, tmp_path):
    monkeypatch.delenv("REPCALI_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache.cache_dir() == tmp_path / "repcali"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_dir() == tmp_path / "home" / ".cache" / "repcali"


def test_content_digest_reads_the_environment_variables_the_configs_read(tmp_path, monkeypatch):
    (tmp_path / "local.yaml").write_text("runs_dir: /scratch/${oc.env:REPCALI_TEST_USER}/runs\n")
    monkeypatch.setenv("REPCALI_TEST_USER", "a")
    before = cache.content_digest([tmp_path])
    monkeypatch.setenv("REPCALI_TEST_USER", "b")
    assert cache.content_digest([tmp_path]) != before


COMPUTE_ONCE = """
import sys, time
from pathlib import Path
from repcali import cache
log = Path(sys.argv[1])
def compute():
    with log.open("a") as f:
        f.write("computed\\n")
    time.sleep(1.0)  # long enough for the other process to miss the file too
    return [1, 2, 3]
print(cache.cached("shared", "key", compute))
"""


def test_processes_that_miss_the_same_entry_at_once_compute_it_once(tmp_path):
    """Two real processes: one computes while the other waits on the entry's lock, then reads what it wrote."""
    env = {**os.environ, "REPCALI_CACHE_DIR": str(tmp_path / "cache")}
    log = tmp_path / "computed.log"
    command = [sys.executable, "-c", COMPUTE_ONCE, str(log)]
    processes = [subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [process.communicate(timeout=60)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0]
    assert outputs == ["[1, 2, 3]\n"] * 2 and log.read_text() == "computed\n"
