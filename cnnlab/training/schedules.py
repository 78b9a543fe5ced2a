"""Learning-rate schedules: the factor that multiplies the peak learning rate, a pure function of the step.

    lr_factor(Schedule(kind="cosine", warmup=0.1), step=50, total=1000)   # 0.5 (halfway up)

step counts optimizer steps from 0 (the step about to be taken); total is the run's number of
steps. Every kind is piecewise linear or cosine in the fraction t = step / total:
    constant  1 after the warm-up
    linear    1 after the warm-up, falling linearly to `final` at the end
    cosine    1 after the warm-up, falling along half a cosine to `final` at the end
    triangle  from `start` up to 1 at `peak`, then linearly down to `final` at the end
The warm-up rises linearly from 0 to 1 over the first `warmup` fraction of the steps.
"""
from __future__ import annotations

import math

from ..recipes.schema import Schedule


def lr_factor(s: Schedule, step: int, total: int) -> float:
    """The learning-rate factor at step (0-based) of a run of total steps."""
    t = min(max(step / max(total, 1), 0.0), 1.0)
    if s.kind == "triangle":
        if t < s.peak:
            return s.start + (1.0 - s.start) * t / s.peak
        return 1.0 + (s.final - 1.0) * (t - s.peak) / (1.0 - s.peak) if s.peak < 1 else 1.0
    if t < s.warmup:
        return t / s.warmup
    if s.kind == "constant":
        return 1.0
    u = (t - s.warmup) / (1.0 - s.warmup) if s.warmup < 1 else 1.0  # progress of the decay, 0..1
    if s.kind == "linear":
        return 1.0 + (s.final - 1.0) * u
    if s.kind == "cosine":
        return s.final + (1.0 - s.final) * 0.5 * (1.0 + math.cos(math.pi * u))
    raise ValueError(f"unknown schedule kind {s.kind!r}")
