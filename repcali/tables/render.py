"""A table as text: Markdown, LaTeX (booktabs) and CSV (one row per cell and metric)."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Section:
    """One task's block of a table: a header, rows of formatted cells, notes under it."""

    title: str
    header: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)


@dataclass
class Table:
    name: str
    title: str
    description: str
    sections: list[Section]
    records: list[dict]  # the numbers behind the cells, for the CSV
    notes: list[str] = field(default_factory=list)


def number(value: float | None, sign: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:+.2f}" if sign else f"{value:.2f}"


def markdown(table: Table) -> str:
    lines = [f"# {table.title}", "", table.description, ""]
    for section in table.sections:
        lines += [f"## {section.title}", ""]
        lines.append("| " + " | ".join(section.header) + " |")
        lines.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(section.header))) + "|")
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in section.rows]
        lines += [""] + [f"- {note}" for note in section.notes] + ([""] if section.notes else [])
    lines += [f"- {note}" for note in table.notes]
    return "\n".join(lines).rstrip() + "\n"


_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{"}
_LATEX |= {"}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}", "±": r"$\pm$", "Δ": r"$\Delta$", "λ": r"$\lambda$"}
_LATEX |= {"–": "--", "—": "---", "·": r"$\cdot$", "†": r"$\dagger$", "×": r"$\times$", "−": "$-$", "…": r"\ldots{}"}
_LATEX |= {"★": r"$\star$", "≥": r"$\geq$", "≤": r"$\leq$", "α": r"$\alpha$", "→": r"$\rightarrow$"}
_LATEX |= {"ε": r"$\varepsilon$"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX.get(char, char) for char in text)


def latex(table: Table) -> str:
    """One ``table`` float per section; needs ``\\usepackage{booktabs}``."""
    out = [f"% {latex_escape(table.title)}. Made by python -m repcali.tables; needs \\usepackage{{booktabs}}.", ""]
    for section in table.sections:
        out += [
            r"\begin{table}[t]",
            r"\centering\small",
            r"\begin{tabular}{l" + "r" * (len(section.header) - 1) + "}",
            r"\toprule",
            " & ".join(latex_escape(cell) for cell in section.header) + r" \\",
            r"\midrule",
            *[" & ".join(latex_escape(cell) for cell in row) + r" \\" for row in section.rows],
            r"\bottomrule",
            r"\end{tabular}",
            rf"\caption{{{latex_escape(table.title)}: {latex_escape(section.title)}. "
            + latex_escape(" ".join(section.notes))
            + "}",
            rf"\label{{tab:{table.name}:{section.title}}}".replace("_", "-"),
            r"\end{table}",
            "",
        ]
    return "\n".join(out)


def write_csv(table: Table, path: Path) -> None:
    columns = list(dict.fromkeys(key for record in table.records for key in record))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(table.records)
