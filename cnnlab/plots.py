"""Figures: training curves (the report's Fig 8) and a labelled sample grid (its Fig 6).

The only module that imports matplotlib, with the file-only Agg backend: no screen needed.
Curves are drawn from history.csv on disk.
"""
from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def read_history(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def plot_curves(history_csv: Path, out: Path, title: str = "") -> Path:
    """Validation accuracy and average training loss per epoch, side by side, in one PNG."""
    rows = read_history(history_csv)
    epochs = [int(r["epoch"]) for r in rows]
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(10, 4))
    ax_acc.plot(epochs, [r["val_acc"] for r in rows], marker="o", color="tab:blue")
    ax_acc.set(xlabel="epoch", ylabel="validation accuracy (%)", title="Validation accuracy")
    ax_loss.plot(epochs, [r["avg_loss"] for r in rows], marker="o", color="tab:red")
    ax_loss.set(xlabel="epoch", ylabel="average training loss", title="Training loss")
    for ax in (ax_acc, ax_loss):
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return Path(out)


def sample_grid(x, y, classes: list[str], out: Path, per_class: int = 10, seed: int = 0) -> Path:
    """A grid with one row per class (labelled) and per_class random images of it."""
    x, y = np.asarray(x), np.asarray(y)
    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(len(classes), per_class, squeeze=False,
                             figsize=(per_class * 0.8 + 1.2, len(classes) * 0.8))
    for c, name in enumerate(classes):
        idx = np.flatnonzero(y == c)
        chosen = rng.choice(idx, size=min(per_class, len(idx)), replace=False)
        for j, ax in enumerate(axes[c]):
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if j < len(chosen):
                ax.imshow(x[chosen[j]].transpose(1, 2, 0), interpolation="nearest")
        axes[c][0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    fig.tight_layout(pad=0.3)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return Path(out)
