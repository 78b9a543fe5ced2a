"""The figures of an evaluation and a report, as PNG bytes: confusion matrix, confident
mistakes, reliability diagram, training curves (one run or several overlaid), image strips.

Figures are built with matplotlib's object-oriented API (a Figure on its own Agg canvas): pyplot
and the process's backend are never touched, so a notebook keeps its own. Text that comes from data (class names, run
names) is drawn as plain text: never TeX, never mathtext ('$' is escaped), so a class folder
named '$x^2$' or '<b>' is printed as it is written. Every PNG carries the tag
Software = "cnnlab" (SOFTWARE; plots.py marks its files the same way), which tells cnnlab's
own files from a user's.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

# PNG bytes of a Figure or an image array, tagged Software = cnnlab: the one way cnnlab writes them.
from ..analysis.inspect_figures import SOFTWARE, grid_png
from ..analysis.inspect_figures import figure_png as _png


def plain(text) -> str:
    """Text for matplotlib that can never turn into mathtext: every '$' is escaped."""
    return str(text).replace("$", r"\$")


def _subplots(*args, **kwargs):
    from ..analysis.plots import subplots  # matplotlib is imported only when a figure is drawn
    return subplots(*args, **kwargs)


# The report's column is about 1060 px wide at 1280 px (100 dpi: 10.6 inches): a figure drawn no
# wider shows its text at the size it was set in, never scaled down past reading.
COLUMN_INCHES = 10.6


def _rc():
    """Settings for every figure here: no TeX whatever the user's matplotlibrc says."""
    import matplotlib
    return matplotlib.rc_context({"text.usetex": False, "axes.titlesize": 11, "font.size": 9})


def is_ours(path) -> bool:
    """Whether the PNG at path was written by cnnlab (its Software tag)."""
    try:
        with Image.open(path) as im:
            return im.format == "PNG" and str(im.info.get("Software", "")).startswith(SOFTWARE)
    except Exception:  # noqa: BLE001 - anything unreadable is not ours
        return False


def confusion(cm, classes: list[str]) -> bytes:
    """Two panels: counts, and each row as percent of that true class; labelled axes."""
    cm = np.asarray(cm, dtype=np.int64)
    n = len(classes)
    rows = cm.sum(axis=1, keepdims=True)
    norm = 100.0 * cm / np.maximum(rows, 1)
    labels = [plain(c if len(c) <= 18 else c[:17] + "…") for c in classes]
    # Up to 10 classes the two panels fit the report's column, so the numbers show at their
    # size (10 pt: 14 px); more classes make it wider, to be scrolled, not shrunk.
    side = min(max(4.0, 0.34 * n + 1.4), 20.0)
    tick = max(5.0, min(10.0, 260.0 / max(n, 1)))
    with _rc():
        fig, axes = _subplots(1, 2, figsize=(2 * side + 0.8, side + 0.6))
        for ax, values, title, fmt in ((axes[0], cm, "Counts", "{:d}"),
                                       (axes[1], norm, "Percent of each true class", "{:.0f}")):
            im = ax.imshow(values, cmap="Blues", vmin=0)
            ax.set_title(title)
            ax.set_xticks(range(n), labels, rotation=45, ha="right", rotation_mode="anchor", fontsize=tick)
            ax.set_yticks(range(n), labels, fontsize=tick)
            ax.set_xlabel("predicted class")
            ax.set_ylabel("true class")
            if n <= 20:
                top = values.max() if values.size else 0
                for t in range(n):
                    for p in range(n):
                        v = values[t, p]
                        ax.text(p, t, fmt.format(int(v) if fmt == "{:d}" else float(v)), ha="center",
                                va="center", fontsize=8 if n > 10 else 10,
                                color="white" if top and v > 0.6 * top else "black")
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        fig.tight_layout()
        return _png(fig)


def mistakes(images, true_names: list[str], pred_names: list[str], probs: list[float],
             cols: int = 6, title: str = "") -> bytes:
    """A grid of images (uint8 (k, C, H, W)) captioned true class, predicted class, probability.

    Six columns of 1.75 inches fit the report's column: the 10 pt captions show at 14 px.
    """
    k = len(images)
    cols = max(1, min(cols, k))
    rows = max(1, -(-k // cols))
    with _rc():
        top = 0.4 if title else 0.0  # inches above the grid for the title
        fig, axes = _subplots(rows, cols, figsize=(max(1.75 * cols, 5.0 if title else 0), 2.6 * rows + top),
                              squeeze=False)
        for i, ax in enumerate(axes.flat):
            ax.axis("off")
            if i >= k:
                continue
            img = np.asarray(images[i]).transpose(1, 2, 0)
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", interpolation="nearest")
            caption = f"true: {_short(true_names[i])}\npred: {_short(pred_names[i])}\n{100 * probs[i]:.1f} %"
            ax.set_title(plain(caption), fontsize=10, color="#b00020", pad=2)
        if k == 0:
            axes.flat[0].text(0.5, 0.5, "no mistakes", ha="center", va="center")
        if title:
            fig.suptitle(plain(title), fontsize=11, y=1 - 0.05 / fig.get_figheight(), va="top")
        fig.tight_layout(pad=0.4, rect=(0, 0, 1, 1 - top / fig.get_figheight()))
        return _png(fig)


def _short(name: str, width: int = 14) -> str:
    return name if len(name) <= width else name[:width - 1] + "…"


def calibration(bins: dict, ece: float) -> bytes:
    """Reliability diagram: accuracy per confidence bin against the diagonal; counts below."""
    edges = np.asarray(bins["edges"])
    width = np.diff(edges)
    acc = np.nan_to_num(np.asarray(bins["accuracy"], dtype=np.float64))
    conf = np.asarray(bins["confidence"], dtype=np.float64)
    count = np.asarray(bins["count"])
    with _rc():
        fig, (ax, axc) = _subplots(2, 1, figsize=(5, 5.6), height_ratios=[3, 1], sharex=True)
        ax.bar(edges[:-1], acc, width=width, align="edge", color="tab:blue", edgecolor="white",
               label="accuracy in bin")
        gap = np.where(count > 0, np.nan_to_num(conf) - acc, 0)
        ax.bar(edges[:-1], gap, bottom=acc, width=width, align="edge", color="tab:red", alpha=0.3,
               edgecolor="none", label="gap to confidence")
        ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
        ax.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy",
               title=f"Reliability diagram (ECE {100 * ece:.2f} %)")
        ax.legend(loc="upper left", fontsize=8)
        axc.bar(edges[:-1], count, width=width, align="edge", color="gray", edgecolor="white")
        axc.set(xlabel="confidence (top probability)", ylabel="images")
        fig.tight_layout()
        return _png(fig)


def curves(runs: list[tuple[str, list[dict]]]) -> bytes:
    """Validation accuracy and training loss per epoch; one line per (label, history rows)."""
    with _rc():
        fig, (ax_acc, ax_loss) = _subplots(1, 2, figsize=(10, 3.8))
        for label, rows in runs:
            epochs = [int(r["epoch"]) for r in rows]
            ax_acc.plot(epochs, [r["val_acc"] for r in rows], marker="o", ms=3, label=plain(label))
            ax_loss.plot(epochs, [r["avg_loss"] for r in rows], marker="o", ms=3, label=plain(label))
        ax_acc.set(xlabel="epoch", ylabel="validation accuracy (%)", title="Validation accuracy")
        ax_loss.set(xlabel="epoch", ylabel="average training loss", title="Training loss")
        from ..analysis.plots import epoch_ticks  # whole epochs, even after one (not 0.96...1.04)
        last = max((int(r["epoch"]) for _, rows in runs for r in rows), default=1)
        for ax in (ax_acc, ax_loss):
            ax.grid(alpha=0.3)
            epoch_ticks(ax, last)
        low, high = ax_acc.get_ylim()
        ax_acc.set_ylim(max(0.0, low), min(100.0, high))
        if len(runs) > 1:
            ax_acc.legend(fontsize=8)
        fig.tight_layout()
        return _png(fig)


def strip(images, scale: int = 2, gap: int = 2) -> bytes:
    """Images (uint8 (k, C, H, W)) side by side in one PNG, each enlarged scale times (no text)."""
    images = np.asarray(images)
    k, c, h, w = images.shape
    canvas = np.full((h * scale, k * (w * scale + gap) - gap if k else 1, 3), 255, dtype=np.uint8)
    for i, img in enumerate(images):
        rgb = np.repeat(img, 3, axis=0) if c == 1 else img[:3]
        big = rgb.transpose(1, 2, 0).repeat(scale, axis=0).repeat(scale, axis=1)
        x0 = i * (w * scale + gap)
        canvas[:, x0:x0 + w * scale] = big
    return grid_png(canvas)
