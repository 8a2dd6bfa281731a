"""The few numbers the RepCali paper is known to report, and reference points for baselines.

They live in ``paper_numbers.csv`` beside this file, one row per number with its source and the
strength of the evidence (``S``: quoted by one public review of the paper, whose full text could
not be read; ``reference``: the backbone's or baseline's *own* paper, never a RepCali number).
``kind`` says how a row is shown: ``value`` beside our mean of the matching cell, ``delta``
beside our Δ, ``claim`` as a note under the table. A row without a model (or task) matches no
cell and is shown as a note: a number whose backbone the paper does not state is never pinned on
one of ours.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from repcali.identity import RunIdentity

PAPER_NUMBERS = Path(__file__).with_name("paper_numbers.csv")


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

    def describe(self) -> str:
        """``paper, xsum rouge1 +0.11: backbone not stated (source; evidence S)``."""
        number = "" if self.value is None else f"{self.value:+g}" if self.kind == "delta" else f"{self.value:g}"
        where = " ".join(part for part in (self.task, self.model, self.method, self.metric, number) if part)
        label = "reference" if self.evidence == "reference" else "paper"
        return f"{label}{', ' + where if where else ''}: {self.note} ({self.source}; evidence {self.evidence})"


def load(path: Path = PAPER_NUMBERS) -> list[PaperNumber]:
    with open(path, newline="") as handle:
        return [
            PaperNumber(**{**row, "value": float(row["value"]) if row["value"] else None})
            for row in csv.DictReader(handle)
        ]
