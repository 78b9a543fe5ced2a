"""Training on the hard images: from an epoch on, each epoch takes only the part of the training
images whose loss was highest when they were last trained on.

    sel = create(Select(keep=0.5, from_epoch=2), n)   # None when keep is 1 (every image)
    order = sel.order(epoch_permutation(n, seed, epoch), epoch, step)   # this epoch's images
    ... each step:  sel.record(idx, per_image_losses)

The loss of an image is the one its last training step computed (label smoothing included),
so choosing costs no extra forward pass; an image not yet trained on counts as hardest. An
image left out keeps its old loss, and so comes back once the chosen ones' losses fall below
it. The chosen images keep the order they have in the epoch's permutation, a pure function of
(seed, epoch), and ties go to the earlier place in it: the choice is a pure function of the
seed and the losses. The losses are ranked as they stood when the epoch began (kept apart
from the ones being recorded), so a run stopped within an epoch and resumed trains the same
images in the same order; state_dict() carries both.

This is selective training on the "biggest losers" (Jiang et al. 2019, Loshchilov and Hutter
2015), with losses from the previous pass instead of a fresh forward pass.
"""
from __future__ import annotations

import math

import torch

from ..recipes.schema import Select


ONE_PROCESS = ("[select] trains on the hard images in one process only (each process would see the losses "
               "of its part of the batches): drop --nproc, or set select.keep = 1")


def active(cfg: Select) -> bool:
    return cfg.keep < 1


def epoch_size(cfg: Select, n: int, epoch: int) -> int:
    """How many of the n training images epoch trains on."""
    if not active(cfg) or epoch < cfg.from_epoch:
        return n
    return max(1, round(cfg.keep * n))


def epoch_steps(cfg: Select, n: int, epoch: int, batch_size: int) -> int:
    return math.ceil(epoch_size(cfg, n, epoch) / batch_size)


class Selector:
    def __init__(self, cfg: Select, n: int, device=None):
        self.cfg = cfg
        self.losses = torch.full((n,), math.inf, device=device)  # each image's last loss
        self.ranked = self.losses.clone()  # the losses as they stood when this epoch began

    def order(self, perm: torch.Tensor, epoch: int, step: int) -> torch.Tensor:
        """The images epoch trains on, in the order it trains them: perm (the epoch's
        permutation of all n) itself, or its hardest epoch_size images in perm's order.
        step: steps of the epoch already taken (0 at its start, when the ranking is taken)."""
        if step == 0:
            self.ranked = self.losses.clone()
        k = epoch_size(self.cfg, len(perm), epoch)
        if k == len(perm):
            return perm
        _, places = torch.sort(self.ranked[perm], descending=True, stable=True)
        return perm[places[:k].sort().values]

    @torch.no_grad()
    def record(self, idx: torch.Tensor, losses: torch.Tensor) -> None:
        """The per-image losses of a step's batch idx."""
        self.losses[idx] = losses.detach().float()

    def state_dict(self) -> dict:
        return {"losses": self.losses.cpu(), "ranked": self.ranked.cpu()}

    def load_state_dict(self, state: dict) -> None:
        self.losses = state["losses"].to(self.losses.device)
        self.ranked = state["ranked"].to(self.losses.device)


def create(cfg: Select, n: int, device=None) -> Selector | None:
    return Selector(cfg, n, device) if active(cfg) else None
