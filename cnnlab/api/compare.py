"""cnnlab.compare: runs or groups side by side, the numbers `cnnlab compare --json` prints.

    result = cnnlab.compare(group_seed, group_p1)     # Run/Group objects or folder paths
    for g in result["groups"]: print(g["name"], g["mean"], g["ci95"])   # per group
    result["pairs"]                                   # each group against the first: diff, p_value, verdict
    result.plot()                                     # curves: mean and min-max band per group
"""
from __future__ import annotations

from pathlib import Path
from typing import Any


class Comparison(dict):
    """The comparison as a dict (groups, comparisons, flags: as `cnnlab compare --json`), and its plot."""

    def __init__(self, result: dict, loaded: list) -> None:
        super().__init__(result)
        self._loaded = loaded

    def plot(self, title: str = ""):
        """Validation accuracy and training loss per epoch, one colour per group (a matplotlib Figure)."""
        from ..analysis.compare_plot import groups_figure
        return groups_figure([(g["name"], [r.history for r in group.finished])
                              for g, group in zip(self["groups"], self._loaded)], title)

    def table(self) -> str:
        """The table `cnnlab compare` prints."""
        from ..runs.compare import format_table
        return format_table(dict(self))

    def _repr_html_(self) -> str:
        import html

        from .run import figure_html
        return f"<pre>{html.escape(self.table())}</pre>{figure_html(self.plot())}"


def compare(*runs_or_groups: Any) -> Comparison:
    """Compare runs and groups (Run, Group, or folder paths); the first is the baseline.

    Returns the numbers `cnnlab compare --json` prints ("groups"; "pairs": per group: test accuracy mean, std,
    95 % interval, ...; each group against the first: difference, Welch's t-test, verdict),
    with .plot() and .table(). The interval and test need scipy (pip install 'cnnlab[stats]').

    >>> result = cnnlab.compare(group_a, group_b)   # doctest: +SKIP
    >>> print(result.table()); result.plot()        # doctest: +SKIP
    """
    from ..errors import SettingsError
    from ..runs.compare import compare as compare_groups, load_group
    if not runs_or_groups:
        raise SettingsError("compare() needs at least one run or group")
    paths = [Path(getattr(x, "path", x)) for x in runs_or_groups]
    loaded = [load_group(p) for p in paths]
    return Comparison(compare_groups(loaded), loaded)
