"""``make tables``: every paper table, rebuilt from the runs' ``results.json`` (no network, no W&B).

    python -m repcali.tables --runs runs --out tables

For each table (:mod:`.specs`, plus one per other experiment found) it writes
``<out>/<name>.md``, ``.tex``, ``.csv`` and ``.png``:

- one section per task; a row per backbone (or method, or ablation setting), the baseline first
  and its RepCali row under it;
- cells are mean ± std over seeds, with completed/expected seeds in ``runs``; RepCali cells add
  Δ over their baseline (same backbone, method and training settings, seed by seed) and ``*``
  where the seed-aware test (training seeds and test set) gives p < 0.05 with at least 3 paired
  seeds, ``n < 3 seeds`` where there are fewer (:mod:`.significance`);
- the paper's known numbers (:mod:`.paper`) beside ours where they exist, with their unit when it
  is not ours or unknown;
- missing, failed, running and partial cells say so; nothing is dropped;
- the CSV holds every number behind the cells, one row per cell and metric (the interval, both
  p-values, ASO's ε_min and the seeds needed for 80 % power among them);
- the PNG plots Δ of each task's primary metric per row, with the 95 % interval as error bars.

Predictions are read only for RepCali cells with a completed baseline, once per run.

Modules: :mod:`.specs` (which tables), :mod:`.cells` (runs grouped into cells), :mod:`.text`
(what a cell says), :mod:`.significance` (which test a cell's metric gets, on which data),
:mod:`.seed_significance` (the statistics), :mod:`.paper` (the paper's numbers), :mod:`.render`
(md, tex, csv), :mod:`.plot` (png), :mod:`.build` (all of it), ``__main__`` (CLI).
"""

from repcali.tables.build import build
from repcali.tables.specs import SPECS, TableSpec

__all__ = ["SPECS", "TableSpec", "build"]
