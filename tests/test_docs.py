"""The docs stay true: every relative link resolves inside the repository (anchors included), nothing points
to a folder a clone does not have, each command of the first page runs in its cheap form (read from
README.md itself, so a changed command is what gets tested), and what the first page shows a command
printing is what it prints now."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import pytest
import yaml

from tests import cli
from tests.grid import ROOT

README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").rglob("*.md")), ROOT / "sweeps" / "README.md"]
FIRST_PAGE_LINES = 300
FENCE = re.compile(r"^```([\w-]*)\n(.*?)^```[ \t]*$", re.S | re.M)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)
# Where the project must never point: the workspace beside a checkout (a clone has no such folder).
OUTSIDE = re.compile(r"\.\./shared\b|/work/share[d]\b")


def prose(text: str) -> str:
    """Markdown without its fenced code blocks and inline code spans: where links and headings live."""
    return re.sub(r"`[^`\n]*`", "", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: link text kept, lowercased, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading's anchor in a page's ``text``, repeated headings numbered as GitHub numbers them."""
    seen, found = Counter(), set()
    for heading in HEADING.findall(FENCE.sub("", text)):
        base = slug(heading)
        found.add(f"{base}-{seen[base]}" if seen[base] else base)
        seen[base] += 1
    return found


def broken_links(page: Path, text: str) -> list[str]:
    """The relative links of ``text`` (the page at ``page``) that name no file of the repository, or no
    heading of the page they name."""
    broken = []
    for target in LINK.findall(prose(text)):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:: not a file of the repository
            continue
        path, _, anchor = target.partition("#")
        file = Path(os.path.normpath(page.parent / unquote(path))) if path else page
        if not file.is_relative_to(ROOT) or not file.exists():
            broken.append(f"{target}: no such file in the repository")
        elif (
            anchor
            and file.suffix == ".md"
            and unquote(anchor) not in anchors(text if file == page else file.read_text())
        ):
            broken.append(f"{target}: no heading with that anchor in {file.relative_to(ROOT)}")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_resolves_inside_the_repository(page):
    broken = broken_links(page, page.read_text())
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_the_link_checker_finds_a_missing_file_a_missing_anchor_and_a_path_out_of_the_repository():
    text = "# Title\n\n[a](missing.md) [b](paper.md#no-such-heading) [c](../../x.md) [d](#title) `[e](y.md)`\n"
    assert broken_links(ROOT / "docs" / "paper.md", text) == [
        "missing.md: no such file in the repository",
        "paper.md#no-such-heading: no heading with that anchor in docs/paper.md",
        "../../x.md: no such file in the repository",
    ]  # not the good anchor (#title), not a link in inline code


def test_anchors_are_githubs():
    assert slug("Weights & Biases") == "weights--biases"
    assert slug("Try it: `make demo`") == "try-it-make-demo"
    assert slug("The λ search") == "the-λ-search"
    assert slug("Two that are not the paper's") == "two-that-are-not-the-papers"


def test_nothing_points_outside_the_repository():
    """No page, config or module refers to the workspace beside a checkout."""
    suffixes = {".md", ".py", ".yaml", ".yml", ".toml", ".cff", ".txt", ".cfg"}
    skipped = {".git", ".venv", "runs", "tables", "outputs", "multirun", "wandb", "__pycache__"}
    offenders = []
    for folder, subfolders, files in os.walk(ROOT):
        subfolders[:] = [name for name in subfolders if name not in skipped and not name.endswith(".egg-info")]
        for name in files:
            path = Path(folder) / name
            if (path.suffix in suffixes or name == "Makefile") and OUTSIDE.search(path.read_text(errors="replace")):
                offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, f"refer to a folder outside the repository: {offenders}"


def test_the_first_page_is_a_first_page():
    lines = README.read_text().splitlines()
    assert len(lines) <= FIRST_PAGE_LINES, f"README.md has {len(lines)} lines; move detail to docs/"
    assert "python train.py model=bart task=xsum calib=on" in "\n".join(lines[:60]), "the paper's command, early"


def test_layout_names_every_module():
    layout = (ROOT / "docs" / "layout.md").read_text()
    modules = [
        f"{path.name}/" if path.is_dir() else path.name
        for path in sorted((ROOT / "repcali").iterdir())
        if path.suffix == ".py" or (path.is_dir() and (path / "__init__.py").is_file())
    ]
    missing = [name for name in modules if not re.search(rf"^{re.escape(name)}\s", layout, re.M)]
    assert not missing, f"docs/layout.md does not say what these do: {missing}"


def test_citation_and_licence_match_the_package():
    pyproject = (ROOT / "pyproject.toml").read_text()
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert f'\nversion = "{citation["version"]}"\n' in pyproject
    assert f'license = {{ text = "{citation["license"]}" }}' in pyproject and citation["license"] == "Apache-2.0"
    assert any("2505.08463" in reference["url"] for reference in citation["references"])
    assert (ROOT / "LICENSE").read_text().split()[:3] == ["Apache", "License", "Version"]


# ---- The first page's commands, each in its cheap form ----------------------------------------------------
# A ``text`` block is what the page says the ``bash`` block before it prints (when that block holds one command).


@dataclass
class Block:
    language: str
    body: str
    follows: Block | None  # the fenced block before this one


def blocks(text: str) -> list[Block]:
    found: list[Block] = []
    for match in FENCE.finditer(text):
        found.append(Block(match[1], match[2], found[-1] if found else None))
    return found


def commands(body: str) -> list[list[str]]:
    """The commands of a ``bash`` block: comments dropped, continuation lines joined, ``&&`` split."""
    found = []
    for line in body.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        while words:
            cut = words.index("&&") if "&&" in words else len(words)
            found.append(words[:cut])
            words = words[cut + 1 :]
    return found


def first_page() -> list[tuple[list[str], str | None]]:
    """Each command of README.md's ``bash`` blocks, with what the page says it prints (or None)."""
    found = []
    for block in blocks(README.read_text()):
        if block.language == "text" and block.follows and block.follows.language == "bash":
            if len(found_here := commands(block.follows.body)) == 1:
                found[-1] = (found_here[0], block.body)
        elif block.language == "bash":
            found += [(command, None) for command in commands(block.body)]
    return found


def make(*args: str) -> str:
    done = subprocess.run(["make", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"make {shlex.join(args)}: {done.stderr}"
    return done.stdout


def recipe(target: str, *assignments: str) -> list[list[str]]:
    """The python commands ``make <target>`` runs, each as its arguments after ``python`` (``make -n``, the
    environment taken as installed)."""
    found = []
    for line in make("-n", "-o", ".venv/.installed", target, *assignments).splitlines():
        words = shlex.split(line)
        where = next((i for i, word in enumerate(words) if word.endswith("/python")), None)
        if where is not None:
            found.append(words[where + 1 :])
    return found


def venv() -> str:
    """The folder ``make install`` creates its environment in."""
    return re.search(r"-m venv (\S+)", make("-n", "-B", "install"))[1]


CONFIG_ONLY = ["--cfg", "job"]  # compose and print the config, load nothing: a hub backbone needs no network
# A train.py run of `make demo` cut to a few steps on a few examples; the same config otherwise.
FEW_STEPS = ["trainer.max_steps=2", "task.max_eval_samples=4", "task.selection.max_samples=4"]


def python(args: list[str], cheap: list[str], runs: Path) -> str:
    """``python <args>`` in this process, cheaply: ``train.py`` with ``cheap`` added (its runs into ``runs``);
    a report of ``runs/...`` reads ``runs`` instead; the planner as it is (it runs nothing); prefetch offline
    (it refuses, naming what is not in the cache)."""
    if args[0] == "train.py":
        if "--cfg" not in args:
            args = [*args, *cheap, *([] if cheap == CONFIG_ONLY else [f"runs_dir={runs}"])]
    elif args[:3] == ["-m", "repcali.sweeps", "prefetch"]:  # offline here: it names what it would download
        done = cli.here(*args)
        assert done.returncode == 0 or "not in the cache" in done.stderr, f"python {shlex.join(args)}: {done.stderr}"
        return done.stdout
    elif args[:2] == ["-m", "repcali.report"]:
        args = [*args[:2], *(str(runs / a.removeprefix("runs/")) if a.startswith("runs/") else a for a in args[2:])]
    else:
        assert args[:3] == ["-m", "repcali.sweeps", "plan"], f"no cheap form for `python {shlex.join(args)}`"
    done = cli.here(*args)
    assert done.returncode == 0, f"python {shlex.join(args)}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done.stdout


def run_cheaply(command: list[str], runs: Path) -> str:
    """One first-page command in its cheap form; what it printed (a make target's: its last command's)."""
    match command:
        case ["make", "install"]:
            return make("-n", "-B", "install")  # what it would run; nothing is run
        case ["make", "help"]:
            return make("help")
        case ["make", "demo" | "plan" as target, *assignments]:
            cheap = FEW_STEPS if target == "demo" else CONFIG_ONLY
            return [python(args, cheap, runs) for args in recipe(target, *assignments)][-1]
        case ["source", activate]:
            assert activate == f"{venv()}/bin/activate", "the page activates the environment make install creates"
            return ""
        case ["python", *args]:
            return python(args, CONFIG_ONLY, runs)
    raise AssertionError(f"no cheap form for `{shlex.join(command)}`: add one to tests/test_docs.py")


def row_labels(table: str) -> list[str]:
    """The first column of a plain-text table as ``repcali.report`` prints it, below its header and rule."""
    rows = [re.split(r"\s{2,}", line.strip())[0] for line in table.strip().splitlines()]
    return rows[2:] if len(rows) > 2 and set(rows[1]) == {"-"} else rows


def test_the_first_page_commands_are_read_from_the_page():
    listed = first_page()
    assert (["python", "train.py", "model=bart", "task=xsum", "calib=on"], None) in listed
    assert any(command == ["make", "demo"] and shown for command, shown in listed), "the page shows what it prints"
    text = "```bash\nmake demo   # a comment\n```\nprose\n```text\nmetric  a\n```\n```bash\na \\\n  b && c\n```\n"
    found = [(b.language, b.follows.language if b.follows else None) for b in blocks(text)]
    assert found == [("bash", None), ("text", "bash"), ("bash", "text")]
    assert commands(blocks(text)[2].body) == [["a", "b"], ["c"]]


def test_every_first_page_command_runs_in_its_cheap_form(tmp_path):
    totals = set()  # what the commands print, whose figures the page's prose may quote
    for command, shown in first_page():
        printed = run_cheaply(command, tmp_path / "runs")
        totals |= set(printed.split()) if command[-1:] != ["demo"] else set()
        if shown is None:
            continue
        if command[:2] == ["make", "demo"]:  # a few steps print other numbers, in the same rows
            assert row_labels(shown) == row_labels(printed), printed
        else:  # what the page shows is printed now, line for line
            lines = printed.splitlines()
            missing = [line for line in shown.splitlines() if line.strip() and line.rstrip() not in lines]
            assert not missing, f"`{shlex.join(command)}` no longer prints: {missing}"
    quoted = re.findall(r"([\d.,]+) H100-hours", prose(README.read_text()))
    assert quoted and set(quoted) <= totals, f"the page quotes {quoted} H100-hours; the planner prints {totals}"


def test_the_first_pages_result_is_the_generated_tables():
    """The real-weights means on the first page are the ones ``make tables`` wrote into docs/real_weights/."""
    quoted = re.findall(r"\d+\.\d+ ± \d+\.\d+", README.read_text())
    table = (ROOT / "docs" / "real_weights" / "real_weights.md").read_text()
    assert quoted and all(cell in table for cell in quoted), quoted
