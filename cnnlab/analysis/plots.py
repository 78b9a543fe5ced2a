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
MARK_TEXT = f"{MARK} (matplotlib)"  # in every format's own metadata field (see save_options)
PLAIN = {"text.usetex": False}
# The file formats a figure is written in, by the name's extension.
FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".svg": "svg", ".pdf": "pdf"}


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


def image_format(out: Path, flag: str = "--out") -> str:
    """The format a figure file's name asks for (png, jpeg, svg, pdf), or one line refusing it."""
    fmt = FORMATS.get(Path(out).suffix.lower())
    if fmt is None:
        raise CnnlabError(f"{flag} {out}: a figure is written as .png, .jpg, .svg or .pdf; "
                          f"end the file name with one of these")
    return fmt


def save_options(fmt: str) -> dict:
    """fig.savefig's arguments for a format, with the mark that says cnnlab wrote the file."""
    if fmt == "jpeg":
        return {"format": fmt, "dpi": 100, "pil_kwargs": {"comment": MARK_TEXT.encode(), "quality": 92}}
    return {"format": fmt, "dpi": 100, "metadata": {"Software" if fmt == "png" else "Creator": MARK_TEXT}}


def written_by_cnnlab(path: Path) -> bool:
    """Whether path is a figure that cnnlab wrote: a PNG's Software text, a JPEG's comment, an
    SVG's or PDF's creator says so."""
    from PIL import Image
    try:
        if Path(path).suffix.lower() in (".svg", ".pdf"):
            content = Path(path).read_bytes()  # a PDF string escapes the parentheses
            return any(m in content for m in (MARK_TEXT.encode(), b"cnnlab \\(matplotlib\\)"))
        with Image.open(path) as im:
            text = getattr(im, "text", {}).get("Software", "") if im.format == "PNG" else im.info.get("comment", b"")
            text = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
            return text.startswith(MARK)
    except (OSError, ValueError):
        return False


def check_target(out: Path, flag: str = "--out") -> None:
    """Refuse, before any work, a figure path that cannot be written, names no figure format
    (.png, .jpg, .svg, .pdf), or holds a user's file."""
    out = Path(out)
    if out.is_dir():
        raise CnnlabError(f"{flag} {out} is a folder: give a file name such as {out / 'samples.png'}")
    if not out.parent.is_dir():
        raise CnnlabError(f"cannot write {out}: the folder {out.parent} does not exist; create it "
                          f"first or choose another {flag}")
    image_format(out, flag)
    if out.exists() and not written_by_cnnlab(out):
        raise CnnlabError(f"{out} already exists and was not written by cnnlab: choose another "
                          f"{flag} or delete it first")


def _save(fig, out: Path) -> Path:
    """Write fig atomically in the format out's extension names (PNG, JPEG, SVG or PDF)."""
    from ..files import atomic_write_bytes
    buffer = io.BytesIO()
    fig.savefig(buffer, **save_options(image_format(out)))
    atomic_write_bytes(out, buffer.getvalue())
    return Path(out)


def epoch_ticks(ax, last_epoch: int) -> None:
    """Whole epochs only: every epoch up to 10, then every 2nd, 5th, 10th, 20th, 50th, ..."""
    step = 1
    while last_epoch / step > 10:
        step = step * 5 // 2 if str(step)[0] == "2" else step * 2
    ax.set_xticks(range(0, last_epoch + step, step))
    ax.set_xlim(0.5, last_epoch + 0.5)  # after set_xticks, which would widen the view to 0


def epoch_positions(rows: list[dict], last_epoch_steps: int | None = None) -> list[float]:
    """Where each history row sits on the epoch axis: its epoch, or, for a last epoch cut short
    (--max-steps) after `iters` of its last_epoch_steps steps, the fraction of it that ran."""
    xs = [float(r["epoch"]) for r in rows]
    if rows and last_epoch_steps and 0 < rows[-1]["iters"] < last_epoch_steps:
        xs[-1] = rows[-1]["epoch"] - 1 + rows[-1]["iters"] / last_epoch_steps
    return xs


def curves_figure(rows: list[dict], title: str = "", test_acc: float | None = None,
                  last_epoch_steps: int | None = None):
    """The curves of a run's history rows, as a matplotlib figure (see plot_curves)."""
    epochs = epoch_positions(rows, last_epoch_steps)
    partial = bool(rows) and epochs[-1] != rows[-1]["epoch"]
    last = max((int(r["epoch"]) for r in rows), default=1)
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
            ax_acc.plot([epochs[-1] if epochs else last], [test_acc], marker="*", markersize=14, color="tab:green", linestyle="",
                        label=f"test accuracy (final) {test_acc:.2f} %", clip_on=False, zorder=3)
            shown.append(test_acc)
            ax_acc.legend(loc="lower right", fontsize=8)
        lo = max(0.0, math.floor((min(shown, default=0) - 5) / 10) * 10)
        hi = min(100.0, math.ceil((max(shown, default=100) + 5) / 10) * 10)
        ax_acc.set_ylim(lo, hi if hi > lo else lo + 10)
        ax_acc.set(xlabel="epoch", ylabel="accuracy (%)",
                   title="Validation accuracy" if has_val else "Accuracy")
        ax_loss.plot(epochs, [r["avg_loss"] for r in rows], marker="o", color="tab:red", label="training")
        val_loss = [r.get("val_loss", math.nan) for r in rows]
        if any(not math.isnan(v) for v in val_loss):  # histories that record it
            ax_loss.plot(epochs, val_loss, marker="s", color="tab:purple", label="validation")
            ax_loss.legend(loc="upper right", fontsize=8)
        ax_loss.set(xlabel="epoch", ylabel="average loss", title="Loss")
        for ax in (ax_acc, ax_loss):
            ax.grid(alpha=0.3)
            epoch_ticks(ax, last)
            if partial:  # the cut epoch's point sits at the fraction that ran
                ax.set_xlim(min(0.5, epochs[-1] - 0.1), last + 0.5)
        if partial:
            ax_acc.annotate(f"epoch {last} stopped after {int(rows[-1]['iters'])} of {last_epoch_steps} "
                            f"steps (--max-steps)", (0.02, 0.02), xycoords="axes fraction", fontsize=8,
                            color="0.35", annotation_clip=False)
        ax_loss.yaxis.set_major_locator(MaxNLocator(nbins=6))
        if title:
            fig.suptitle(title, parse_math=False)
        fig.tight_layout()
    return fig


def plot_curves(history_csv: Path, out: Path, title: str = "", test_acc: float | None = None,
                last_epoch_steps: int | None = None) -> Path:
    """Validation accuracy (with the final test accuracy marked) and average training loss (and
    validation loss, when history.csv has it) per epoch, side by side, in one figure. A last epoch
    cut short by --max-steps is drawn at the fraction of its last_epoch_steps that ran."""
    return _save(curves_figure(read_history(history_csv), title, test_acc, last_epoch_steps), out)


def sample_grid(x, y, classes: list[str], out: Path, per_class: int = 10, seed: int = 0,
                title: str = "") -> dict:
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
                             figsize=(max(columns * 0.8 + 1.2, 3.2), len(classes) * 0.8 + (0.45 if title else 0)))
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
        if title:
            fig.suptitle(title, fontsize=10, parse_math=False)
        fig.tight_layout(pad=0.3)
    return {"path": _save(fig, out), "per_class": columns, "fewest": min(counts, default=0)}
