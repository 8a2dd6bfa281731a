"""t-SNE of encoder outputs with and without RepCali, before and after fine-tuning (the paper's Fig. 1).

    python -m repcali.analysis.tsne runs/main_table/anlg/t5_base/full/calib-on/seed1-ab12cd34
    python -m repcali.analysis.tsne <run dir> --examples 300 --out fig1.png

One point per evaluation example: its encoder states mean-pooled over its non-padding tokens
(one point is one whole input; token-level states mostly cluster by token identity and would
need thousands of points). Four sets of points:

- before fine-tuning, without calibration: the backbone as the run's model config loads it;
- before fine-tuning, with calibration: that backbone with a freshly initialised block (the
  run's seed and block options), i.e. what the decoder read at step 0;
- after fine-tuning, without calibration: the fine-tuned encoder's output ``h``;
- after fine-tuning, with calibration: ``p = block(h)``, what the decoder reads.

A ``calib=off`` run has only the two sets without calibration. One t-SNE embeds all points
jointly, so positions and spreads compare across panels; each panel highlights one set. Panel
titles give each set's compactness in the original space (mean cosine similarity of its points to
their centroid): t-SNE distances themselves carry little meaning.
"""

from __future__ import annotations

import os

from repcali.threads import wait_policy

os.environ.update(wait_policy(os.environ))  # first, before anything loads torch: waiting threads sleep, never spin

import argparse
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from repcali.errors import RepCaliError
from repcali.results import read_results


def _load_run(run_dir: Path) -> DictConfig:
    results = read_results(run_dir)
    if results is None or results.status != "completed":
        raise RepCaliError(f"No completed run in {run_dir}. Fix: point at a run directory whose results.json is done.")
    if not (run_dir / "model").is_dir():
        raise RepCaliError(f"{run_dir} has no model/ (run with save_model=false). Fix: rerun it with save_model=true.")
    return OmegaConf.create(results.config)


def _examples(cfg: DictConfig, tokenizer, count: int) -> list[dict]:
    """``count`` evaluation examples spread evenly over the length-sorted split, tokenized as in training."""
    from repcali.data import build_task_data

    evaluation = build_task_data(cfg.task, tokenizer, use_prefix=cfg.model.task_prefix).eval
    picked = np.unique(np.linspace(0, len(evaluation) - 1, num=min(count, len(evaluation))).round().astype(int))
    return [{"input_ids": evaluation[int(i)]["input_ids"]} for i in picked]


def pooled_states(model, tokenizer, examples: list[dict], batch_size: int = 32) -> dict[str, np.ndarray]:
    """Mean-pooled encoder output ``h`` and, if the model carries the block, ``p = block(h)``."""
    import torch

    from repcali.calibration import detach_repcali, find_block

    block = find_block(model)
    detach_repcali(model)  # the encoder now returns h; the block object still computes p
    device = next(model.parameters()).device
    model.eval()
    pooled: dict[str, list] = {"h": [], "p": []}
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            batch = tokenizer.pad(examples[start : start + batch_size], return_tensors="pt").to(device)
            h = model.get_encoder()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])[0]
            mask = batch["attention_mask"].unsqueeze(-1).to(h.dtype)
            for name, states in (("h", h), ("p", block(h) if block is not None else None)):
                if states is not None:
                    pooled[name].append(((states * mask).sum(1) / mask.sum(1)).float().cpu().numpy())
    return {name: np.concatenate(chunks) for name, chunks in pooled.items() if chunks}


def compactness(points: np.ndarray) -> float:
    """Mean cosine similarity of points to their centroid (1: all in one direction)."""
    unit = points / np.linalg.norm(points, axis=1, keepdims=True).clip(min=1e-12)
    centroid = unit.mean(axis=0)
    return float((unit @ (centroid / max(float(np.linalg.norm(centroid)), 1e-12))).mean())


def representation_sets(run_dir: Path, count: int) -> dict[str, np.ndarray]:
    """The four (or two) sets of pooled encoder states of a run, in panel order."""
    from transformers import AutoTokenizer, set_seed

    from repcali.calibration import attach_repcali, find_block
    from repcali.config import repcali_config
    from repcali.modeling import load_backbone, load_model

    cfg = _load_run(run_dir)
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "model")  # the run's, with any tokens it added
    set_seed(cfg.seed)
    before, _ = load_backbone(cfg.model, cfg.task.language)
    if before.get_input_embeddings().num_embeddings < len(tokenizer):
        before.resize_token_embeddings(len(tokenizer))  # the task's added tokens, freshly initialised as in the run
    after = load_model(run_dir / "model")
    if find_block(after) is not None:
        attach_repcali(before, repcali_config(cfg.calib))
    examples = _examples(cfg, tokenizer, count)
    initial, tuned = pooled_states(before, tokenizer, examples), pooled_states(after, tokenizer, examples)
    sets = {"before fine-tuning, without calibration": initial["h"]}
    if "p" in initial:
        sets["before fine-tuning, with calibration"] = initial["p"]
    sets["after fine-tuning, without calibration"] = tuned["h"]
    if "p" in tuned:
        sets["after fine-tuning, with calibration"] = tuned["p"]
    return sets


def plot_tsne(sets: dict[str, np.ndarray], title: str, path: Path, seed: int = 0) -> Path:
    """Embed all sets with one t-SNE and draw one panel per set."""
    import matplotlib
    from sklearn.manifold import TSNE

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = np.concatenate(list(sets.values()))
    perplexity = float(min(30.0, max(2.0, (len(points) - 1) / 4)))
    embedded = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(points)
    columns = 2
    rows = (len(sets) + 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(5 * columns, 4.5 * rows), sharex=True, sharey=True)
    start = 0
    for axis, (name, states) in zip(np.ravel(axes), sets.items(), strict=True):
        mine = slice(start, start + len(states))
        start += len(states)
        axis.scatter(embedded[:, 0], embedded[:, 1], s=6, color="lightgray")
        axis.scatter(embedded[mine, 0], embedded[mine, 1], s=10, color="tab:blue")
        axis.set_title(f"{name}\ncompactness {compactness(states):.3f}", fontsize=9)
    figure.suptitle(f"{title}\nt-SNE of mean-pooled encoder states, {len(points) // len(sets)} examples", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def main(argv: list[str] | None = None) -> None:
    cli = argparse.ArgumentParser(prog="python -m repcali.analysis.tsne", description=__doc__.split("\n\n")[0])
    cli.add_argument("run_dir", type=Path, help="a completed run directory (results.json and model/)")
    cli.add_argument("--examples", type=int, default=200, help="evaluation examples to embed (200)")
    cli.add_argument("--out", type=Path, help="PNG to write (default: <run dir>/tsne.png)")
    args = cli.parse_args(argv)
    try:
        sets = representation_sets(args.run_dir, args.examples)
        run = read_results(args.run_dir).identity
        title = f"{run.model} on {run.task}, calib={run.calib}, seed {run.seed}"
        print(plot_tsne(sets, title, args.out or args.run_dir / "tsne.png"))
    except RepCaliError as error:
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    main()
