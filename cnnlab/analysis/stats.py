"""Statistics for comparing runs over seeds: a group's mean and t-interval, Welch's t-test.

    summarize([67.1, 66.8, 67.4])          -> {"n": 3, "mean": ..., "std": ..., "ci95": [low, high]}
    welch([67.1, 66.8, 67.4], [68.0, ...]) -> {"diff": mean(b) - mean(a), "ci95": [...], "p_value": ...}
    verdict(...)                           -> plain words that never claim more than the numbers do

The distributions come from scipy (the optional extra 'stats'); scipy is imported only when
a confidence interval or a p-value is asked for. Nothing here returns NaN: what cannot be
computed (one run, no spread at all) is None, which JSON writes as null.
"""
from __future__ import annotations

import math
import statistics
import warnings

from ..errors import CnnlabError

CONFIDENCE = 0.95
ALPHA = 0.05
MIN_N = 3  # below this per group, nothing is concluded, whatever the p-value


def require_scipy() -> None:
    """Fail with one line naming the extra to install when scipy is missing."""
    _scipy_stats()


def _scipy_stats():
    try:
        import scipy.stats
    except ImportError:
        raise CnnlabError("confidence intervals and t-tests need scipy: install the extra with "
                          "pip install 'cnnlab[stats]'") from None
    return scipy.stats


def _finite(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def summarize(values, with_ci: bool = True) -> dict:
    """n, mean, sample std (n - 1), min, max and the 95 % t-interval of the mean.

    std and ci95 are None for n < 2 (one value says nothing about spread); with std 0 the
    interval is the single point [mean, mean].
    """
    values = [float(v) for v in values]
    n = len(values)
    out = {"n": n, "mean": None, "std": None, "ci95": None, "min": None, "max": None}
    if n == 0:
        return out
    mean = statistics.fmean(values)
    out.update(mean=mean, min=min(values), max=max(values))
    if n < 2:
        return out
    std = statistics.stdev(values)
    out["std"] = std
    if with_ci:
        if std == 0:
            out["ci95"] = [mean, mean]
        else:
            low, high = _scipy_stats().t.interval(CONFIDENCE, n - 1, loc=mean, scale=std / math.sqrt(n))
            out["ci95"] = [float(low), float(high)]
    return out


def welch(a, b) -> dict:
    """b against a: diff = mean(b) - mean(a), its 95 % Welch interval, Welch's t-test p-value.

    p_value, t, df and ci95 are None when the test is undefined: a group with fewer than two
    values, or no spread in either group (every value identical within each group).
    """
    a, b = [float(v) for v in a], [float(v) for v in b]
    out = {"diff": None, "ci95": None, "p_value": None, "t": None, "df": None,
           "n_a": len(a), "n_b": len(b)}
    if not a or not b:
        return out
    out["diff"] = statistics.fmean(b) - statistics.fmean(a)
    if len(a) < 2 or len(b) < 2 or (statistics.stdev(a) == 0 and statistics.stdev(b) == 0):
        return out
    scipy_stats = _scipy_stats()
    with warnings.catch_warnings():  # a group with no spread makes scipy warn of precision loss
        warnings.simplefilter("ignore", RuntimeWarning)
        res = scipy_stats.ttest_ind(b, a, equal_var=False)
        ci = res.confidence_interval(CONFIDENCE)
    out.update(t=_finite(res.statistic), p_value=_finite(res.pvalue), df=_finite(res.df),
               ci95=[float(ci.low), float(ci.high)])
    return out


def _p_text(p: float) -> str:
    """p with enough digits to fall on the same side of ALPHA as p itself (0.0496: 'p = 0.0496',
    never 'p = 0.050' for a p that was called below 0.05)."""
    if p < 0.001:
        return "p < 0.001"
    digits = next((d for d in range(3, 12) if (round(p, d) < ALPHA) == (p < ALPHA)), 12)
    return f"p = {p:.{digits}f}"


def _decimals(*values: float, least: int = 1, most: int = 6) -> int:
    """The fewest decimals (at least `least`) that show each non-zero value as non-zero."""
    return next((d for d in range(least, most) if all(round(abs(v), d) > 0 for v in values if v)), most)


def _n_text(n_a: int, n_b: int) -> str:
    return f"n = {n_a}" if n_a == n_b else f"n = {n_a} and {n_b}"


def verdict(name_a: str, name_b: str, test: dict, unit: str = "points") -> str:
    """What the comparison of b with a allows one to say, in plain words.

    A difference is called only when both groups have at least MIN_N runs and p < ALPHA;
    its size is given with the half-width of its 95 % interval.
    """
    n_a, n_b = test["n_a"], test["n_b"]
    if min(n_a, n_b) == 0:
        return "nothing to compare: a group has no finished runs"
    if min(n_a, n_b) < MIN_N:
        return (f"nothing can be concluded at {_n_text(n_a, n_b)}: run at least {MIN_N} seeds per "
                f"group (5 is better)")
    if test["p_value"] is None:
        return ("nothing can be concluded: every run within each group scored the same, "
                "so there is no spread to test against")
    if test["p_value"] >= ALPHA:
        return f"no evidence of a difference at {_n_text(n_a, n_b)}"
    low, high = test["ci95"]
    half = (high - low) / 2
    better = "better" if test["diff"] > 0 else "worse"
    d = _decimals(test["diff"], half)  # a difference called real is never shown as 0.0
    return (f"{name_b} is {better} by {abs(test['diff']):.{d}f} +- {half:.{d}f} {unit}, "
            f"{_p_text(test['p_value'])}")
