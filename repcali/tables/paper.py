"""The few numbers the RepCali paper is known to report, and reference points for baselines.

They live in ``paper_numbers.csv`` beside this file, one row per number with its source and the
strength of the evidence (``S``: quoted by one public review of the paper, whose full text could
not be read; ``reference``: the backbone's or baseline's *own* paper, never a RepCali number).
``kind`` says how a row is shown: ``value`` beside our mean of the matching cell, ``delta``
beside our Δ, ``claim`` as a note under the table. A row without a model (or task) matches no
cell and is shown as a note: a number whose backbone the paper does not state is never pinned on
one of ours.

``unit`` (:data:`UNITS`) says what the number is measured in: ``points`` on the table's own scale
(metric × 100, or % of the backbone's parameters for ``added_pct``), so comparable with our cell;
``percent``, a change relative to the baseline; ``unknown`` where the sources write "%" and do not
say which of the two. Whatever is not ``points`` carries its unit beside the cell
(``[paper +4.11, unit unknown]``) and in its note: our Δ is absolute, and is never shown next to a
number of another or unknown unit without that caveat.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from repcali.identity import RunIdentity

PAPER_NUMBERS = Path(__file__).with_name("paper_numbers.csv")
UNITS = {  # unit → what is written beside the number in a cell
    "points": "",
    "percent": " % (relative)",
    "unknown": ", unit unknown",
}
UNKNOWN_UNIT = (
    'unit unknown: the sources write "%" without saying whether absolute points or percent relative to '
    "the baseline, so it cannot be compared with our absolute Δ as it stands"
)


@dataclass(frozen=True)
class PaperNumber:
    table: str
    task: str
    model: str
    method: str
    calib: str  # on | off
    metric: str
    kind: str  # value | delta | claim
    value: float | None
    unit: str  # a key of UNITS
    evidence: str
    source: str
    note: str

    def matches(self, table: str, run: RunIdentity, metric: str) -> bool:
        """Whether this number belongs beside ``run``'s cell of ``table`` for ``metric``."""
        calib = "on" if run.calibrated else "off"
        return (self.table, self.task, self.model, self.method, self.calib, self.metric) == (
            table,
            run.task,
            run.model,
            run.method,
            calib,
            metric,
        )

    @property
    def is_note(self) -> bool:
        return self.kind == "claim" or not self.model or not self.task

    @property
    def label(self) -> str:
        return "ref" if self.evidence == "reference" else "paper"

    def beside(self) -> str:
        """What goes beside our cell: ``[paper +4.11, unit unknown]``, ``[ref 45.14]``."""
        number = f"{self.value:+.2f}" if self.kind == "delta" else f"{self.value:.2f}"
        return f"[{self.label} {number}{UNITS[self.unit]}]"

    def describe(self) -> str:
        """``paper, xsum rouge1 +0.11: backbone not stated; unit unknown: ... (source; evidence S)``."""
        number = "" if self.value is None else f"{self.value:+g}" if self.kind == "delta" else f"{self.value:g}"
        where = " ".join(part for part in (self.task, self.model, self.method, self.metric, number) if part)
        label = "reference" if self.label == "ref" else "paper"
        unit = {"percent": "; percent relative to the baseline", "unknown": f"; {UNKNOWN_UNIT}"}.get(self.unit, "")
        return f"{label}{', ' + where if where else ''}: {self.note}{unit} ({self.source}; evidence {self.evidence})"


def load(path: Path = PAPER_NUMBERS) -> list[PaperNumber]:
    with open(path, newline="") as handle:
        numbers = [
            PaperNumber(**{**row, "value": float(row["value"]) if row["value"] else None})
            for row in csv.DictReader(handle)
        ]
    for number in numbers:
        if number.unit not in UNITS:
            raise ValueError(f"{path}: unit {number.unit!r} is none of {sorted(UNITS)}")
    return numbers
