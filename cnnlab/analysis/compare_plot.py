"""The curves of several groups of runs overlaid: validation accuracy and training loss per epoch.

    plot_groups([("seed", [history, ...]), ("seed-p1", [...])], "curves.png")

Each group is one colour: its mean over runs as a line, the band from its lowest to its
highest run, and its number of runs in the legend. Names come from folders, so they are
drawn as plain text (no mathtext: a '$' in a folder name stays a '$').
Imports matplotlib when called, never at import time; builds the figure with the object-oriented
API (its own Agg canvas), so the process's backend and pyplot's figures are left alone.
"""
from __future__ import annotations

from pathlib import Path


def per_epoch(histories: list[list[dict]], key: str) -> tuple[list[int], list[float], list[float], list[float]]:
    """(epochs, mean, min, max) of history[key] over the runs that reached each epoch."""
    by_epoch: dict[int, list[float]] = {}
    for rows in histories:
        for r in rows:
            if r[key] == r[key]:  # nan: no validation split
                by_epoch.setdefault(int(r["epoch"]), []).append(r[key])
    epochs = sorted(by_epoch)
    cols = [by_epoch[e] for e in epochs]
    return epochs, [sum(c) / len(c) for c in cols], [min(c) for c in cols], [max(c) for c in cols]


def plot_groups(groups: list[tuple[str, list[list[dict]]]], out, title: str = "",
                test_accs: list[float | None] | None = None):
    """One figure (out: a .png, .jpg, .svg or .pdf path, or a binary file object that gets a PNG):
    validation accuracy (left) and training loss (right) per epoch, a band per group. test_accs
    (one per group, its mean test accuracy) are marked as a star at the group's last epoch."""
    from .plots import image_format, save_options  # the format out's name says; PNG into a file object
    fig = groups_figure(groups, title, test_accs)
    fig.savefig(out, **save_options("png" if hasattr(out, "write") else image_format(out)))
    return out if hasattr(out, "write") else Path(out)


def groups_figure(groups: list[tuple[str, list[list[dict]]]], title: str = "",
                  test_accs: list[float | None] | None = None):
    """The figure plot_groups saves, as a matplotlib Figure (shown inline in a notebook)."""
    import matplotlib

    from .plots import subplots
    with matplotlib.rc_context({"text.usetex": False, "text.parse_math": False}):
        fig, (ax_acc, ax_loss) = subplots(1, 2, figsize=(11, 4.2))
        colours = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
        for i, (name, histories) in enumerate(groups):
            colour = colours[i % len(colours)]
            for ax, key in ((ax_acc, "val_acc"), (ax_loss, "avg_loss")):
                epochs, mean, low, high = per_epoch(histories, key)
                if not epochs:
                    continue
                ax.plot(epochs, mean, color=colour, label=f"{name} (n = {len(histories)})")
                if len(histories) > 1:
                    ax.fill_between(epochs, low, high, color=colour, alpha=0.2, linewidth=0)
                test = (test_accs or [None] * len(groups))[i]
                if ax is ax_acc and test is not None:
                    ax.plot([epochs[-1]], [test], marker="*", markersize=13, color=colour, linestyle="",
                            markeredgecolor="black", markeredgewidth=0.5, clip_on=False, zorder=3,
                            label=f"{name}: test {test:.2f} %")
        ax_acc.set(xlabel="epoch", ylabel="validation accuracy (%)", title="Validation accuracy")
        ax_loss.set(xlabel="epoch", ylabel="average training loss", title="Training loss")
        from .plots import epoch_ticks  # whole epochs, even after one (matplotlib would show 0.96...1.04)
        last = max((int(r["epoch"]) for _, hs in groups for h in hs for r in h), default=1)
        for ax in (ax_acc, ax_loss):
            ax.grid(alpha=0.3)
            epoch_ticks(ax, last)
        low, high = ax_acc.get_ylim()
        ax_acc.set_ylim(max(0.0, low), min(100.0, high))
        ax_acc.legend(title="mean, band min-max; star: test", fontsize=8)
        if title:
            fig.suptitle(title)
        fig.tight_layout()
    return fig
