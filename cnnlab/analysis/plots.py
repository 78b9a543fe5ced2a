"""Figures: training curves (the report's Fig 8) and a labelled sample grid (its Fig 6).

Figures are built with matplotlib's object-oriented API (subplots below: a Figure on its own
Agg canvas), never through pyplot's global state, and the process's backend is never switched:
a notebook keeps its inline backend, and a returned Figure still shows there.
Curves are drawn from history.csv on disk. Text that comes from data (class and dataset
names) is drawn as plain text: never matplotlib math ($...$) or LaTeX, whatever the user's
matplotlibrc says. PNGs are written atomically, with the user's umask, and marked as
cnnlab's own, so a later run may replace them but never a file the user made.
"""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..errors import CnnlabError

MARK = "cnnlab"  # the PNG's Software text: a file cnnlab wrote and may replace
PLAIN = {"text.usetex": False}


class ShownFigure(Figure):
    """A Figure that Jupyter shows as a PNG when it is a cell's value, whatever the backend:
    IPython draws pyplot's figures itself, but a figure made without pyplot needs _repr_png_."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
        return buffer.getvalue()


def subplots(nrows: int = 1, ncols: int = 1, figsize=None, **kwargs):
    """(Figure, axes) like pyplot.subplots, but a Figure of its own on an Agg canvas: nothing
    global is touched (no backend switch, no figure left open in pyplot).

    >>> fig, (left, right) = subplots(1, 2, figsize=(10, 4))
    """
    fig = ShownFigure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def read_history(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def written_by_cnnlab(path: Path) -> bool:
    """Whether path is a PNG that cnnlab wrote (its Software text says so)."""
    from PIL import Image
    try:
        with Image.open(path) as im:
            return str(getattr(im, "text", {}).get("Software", "")).startswith(MARK)
    except (OSError, ValueError):
        return False


def check_target(out: Path, flag: str = "--out") -> None:
    """Refuse, before any work, a PNG path that cannot be written or holds a user's file."""
    out = Path(out)
    if out.is_dir():
        raise CnnlabError(f"{flag} {out} is a folder: give a file name such as {out / 'samples.png'}")
    if not out.parent.is_dir():
        raise CnnlabError(f"cannot write {out}: the folder {out.parent} does not exist; create it "
                          f"first or choose another {flag}")
    if out.exists() and not written_by_cnnlab(out):
        raise CnnlabError(f"{out} already exists and was not written by cnnlab: choose another "
                          f"{flag} or delete it first")


def _save(fig, out: Path) -> Path:
    from ..checkpoints import atomic_write_bytes
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": f"{MARK} (matplotlib)"})
    atomic_write_bytes(out, buffer.getvalue())
    return Path(out)


def epoch_ticks(ax, last_epoch: int) -> None:
    """Whole epochs only: every epoch up to 10, then every 2nd, 5th, 10th, 20th, 50th, ..."""
    step = 1
    while last_epoch / step > 10:
        step = step * 5 // 2 if str(step)[0] == "2" else step * 2
    ax.set_xticks(range(0, last_epoch + step, step))
    ax.set_xlim(0.5, last_epoch + 0.5)  # after set_xticks, which would widen the view to 0


def curves_figure(rows: list[dict], title: str = "", test_acc: float | None = None):
    """The curves of a run's history rows, as a matplotlib figure (see plot_curves)."""
    epochs = [int(r["epoch"]) for r in rows]
    last = max(epochs, default=1)
    val = [r["val_acc"] for r in rows]
    has_val = any(not math.isnan(v) for v in val)
    with matplotlib.rc_context(PLAIN):
        fig, (ax_acc, ax_loss) = subplots(1, 2, figsize=(10, 4))
        shown = [v for v in val if not math.isnan(v)]
        if has_val:
            ax_acc.plot(epochs, val, marker="o", color="tab:blue", label="validation", clip_on=False)
        else:
            ax_acc.text(0.5, 0.85, "no validation split (--val-size 0):\nno accuracy per epoch",
                        transform=ax_acc.transAxes, ha="center", va="center", color="0.35",
                        parse_math=False)
        if test_acc is not None and not math.isnan(test_acc):
            ax_acc.plot([last], [test_acc], marker="*", markersize=14, color="tab:green", linestyle="",
                        label=f"test accuracy (final) {test_acc:.2f} %", clip_on=False, zorder=3)
            shown.append(test_acc)
            ax_acc.legend(loc="lower right", fontsize=8)
        lo = max(0.0, math.floor((min(shown, default=0) - 5) / 10) * 10)
        hi = min(100.0, math.ceil((max(shown, default=100) + 5) / 10) * 10)
        ax_acc.set_ylim(lo, hi if hi > lo else lo + 10)
        ax_acc.set(xlabel="epoch", ylabel="accuracy (%)",
                   title="Validation accuracy" if has_val else "Accuracy")
        ax_loss.plot(epochs, [r["avg_loss"] for r in rows], marker="o", color="tab:red")
        ax_loss.set(xlabel="epoch", ylabel="average training loss", title="Training loss")
        for ax in (ax_acc, ax_loss):
            ax.grid(alpha=0.3)
            epoch_ticks(ax, last)
        ax_loss.yaxis.set_major_locator(MaxNLocator(nbins=6))
        if title:
            fig.suptitle(title, parse_math=False)
        fig.tight_layout()
    return fig


def plot_curves(history_csv: Path, out: Path, title: str = "", test_acc: float | None = None) -> Path:
    """Validation accuracy (with the final test accuracy marked) and average training loss per
    epoch, side by side, in one PNG."""
    return _save(curves_figure(read_history(history_csv), title, test_acc), out)


def sample_grid(x, y, classes: list[str], out: Path, per_class: int = 10, seed: int = 0) -> dict:
    """A grid with one row per class (labelled) and up to per_class random images of it.

    Returns {"path", "per_class": columns drawn, "fewest": images in the smallest class}:
    a class with fewer images than asked for shows all it has.
    """
    x, y = np.asarray(x), np.asarray(y)
    rng = np.random.default_rng(seed)
    counts = [int((y == c).sum()) for c in range(len(classes))]
    columns = max(1, min(per_class, max(counts, default=1)))
    with matplotlib.rc_context(PLAIN):
        fig, axes = subplots(len(classes), columns, squeeze=False,
                                 figsize=(columns * 0.8 + 1.2, len(classes) * 0.8))
        for c, name in enumerate(classes):
            idx = np.flatnonzero(y == c)
            chosen = rng.choice(idx, size=min(columns, len(idx)), replace=False)
            for j, ax in enumerate(axes[c]):
                ax.set_xticks([])
                ax.set_yticks([])
                for spine in ax.spines.values():
                    spine.set_visible(False)
                if j < len(chosen):
                    ax.imshow(x[chosen[j]].transpose(1, 2, 0), interpolation="nearest")
            axes[c][0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9, parse_math=False)
        fig.tight_layout(pad=0.3)
    return {"path": _save(fig, out), "per_class": columns, "fewest": min(counts, default=0)}
