"""Weight averaging: an exponential moving average (EMA) of the weights, or lookahead.

    avg = create(Averaging(kind="ema", decay=0.99), model)    # None for kind "none"
    ... after each optimizer step:  avg.update(model, steps, total)  # steps taken so far, of total
    evaluate(avg.model, ...)                                   # the averaged network

Both keep a copy of the model (parameters and buffers, batch-norm statistics included) and
update it every `every` steps with avg = decay * avg + (1 - decay) * model.
    ema        the copy is only read: evaluation and the saved weights use it. Its decay warms
               up as min(decay, (1 + n) / (10 + n)) after n updates, so early weights
               do not dominate a short run.
    lookahead  the copy is the "slow" weights: after each update the model is set back to
               them (Zhang et al. 2019, as in the airbench speed records).
ramp > 0 makes the decay grow over the run: decay * (steps / total) ** ramp, so the average
follows the model closely while the learning rate is high and smooths it more and more as
the run ends (airbench's lookahead: decay 0.95**5, every 5 steps, ramp 3).
Integer buffers (batch norm's step count) are copied, not averaged. state_dict() and
load_state_dict() carry everything a resumed run needs.
"""
from __future__ import annotations

import copy

import torch

from ..recipes.schema import Averaging


class WeightAverage:
    def __init__(self, cfg: Averaging, model: torch.nn.Module):
        self.cfg = cfg
        self.model = copy.deepcopy(model).requires_grad_(False)
        self.updates = 0

    def decay(self, steps: int = 0, total: int = 0) -> float:
        """The old average's weight at the update after steps of a run of total steps."""
        base = self.cfg.decay
        if self.cfg.kind == "ema":
            base = min(base, (1 + self.updates) / (10 + self.updates))
        if self.cfg.ramp > 0:
            base *= min(steps / max(total, 1), 1.0) ** self.cfg.ramp
        return base

    @torch.no_grad()
    def update(self, model: torch.nn.Module, steps: int, total: int = 0) -> None:
        """Fold model into the average when steps (taken so far, of the run's total) is a
        multiple of `every`."""
        if steps % self.cfg.every:
            return
        weight = 1.0 - self.decay(steps, total)
        self.updates += 1
        for avg, cur in zip(self.model.state_dict().values(), model.state_dict().values()):
            if avg.dtype.is_floating_point:
                avg.lerp_(cur, weight)
                if self.cfg.kind == "lookahead":
                    cur.copy_(avg)
            else:
                avg.copy_(cur)

    def state_dict(self) -> dict:
        return {"kind": self.cfg.kind, "updates": self.updates, "weights": self.model.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.updates = int(state["updates"])
        self.model.load_state_dict(state["weights"])


def create(cfg: Averaging, model: torch.nn.Module) -> WeightAverage | None:
    return None if cfg.kind == "none" else WeightAverage(cfg, model)
