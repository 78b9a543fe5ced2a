"""A training loss that becomes nan or inf: found at the step it happens, without making a GPU wait.

    watch = LossWatch(device, epoch)
    watch.check(loss, step)   # each step; on the CPU it raises NonFiniteLoss at once
    watch.finish()            # at the epoch's end: on CUDA, raise for the first bad step, if any
"""
from __future__ import annotations

import torch

from ..errors import CnnlabError


class NonFiniteLoss(CnnlabError):
    def __init__(self, epoch: int, step: int, value: float):
        super().__init__(f"the training loss became {value} at epoch {epoch}, step {step}")
        self.epoch, self.step, self.value = epoch, step, value


def deferred_checks(device: torch.device) -> bool:
    """Check the loss without waiting for the device: on CUDA, where a per-step sync costs."""
    return device.type == "cuda"


class LossWatch:
    """Finds the first non-finite loss of an epoch: its step (counted from 1) and its value.

    On the CPU each loss is checked at once, before it touches the weights. Deferred (CUDA),
    the first bad step and its value are kept on the device and a flag is copied to the host
    without waiting; the error comes a step or two later, naming the step that failed.
    """

    def __init__(self, device: torch.device, epoch: int):
        self.epoch, self.deferred = epoch, deferred_checks(device)
        self.first = torch.full((), -1, dtype=torch.int64, device=device)
        self.value = torch.zeros((), dtype=torch.float32, device=device)
        self.ok_host = torch.ones((), dtype=torch.bool, pin_memory=device.type == "cuda")

    def check(self, loss: torch.Tensor, step: int) -> None:
        if not self.deferred:
            if not torch.isfinite(loss):
                raise NonFiniteLoss(self.epoch, step, loss.item())
            return
        if not self.ok_host:  # a flag copied at an earlier step has arrived
            self.finish()
        bad = ~torch.isfinite(loss.detach()) & (self.first < 0)
        self.first = torch.where(bad, step, self.first)
        self.value = torch.where(bad, loss.detach().float(), self.value)
        self.ok_host.copy_(self.first < 0, non_blocking=True)

    def finish(self) -> None:
        """Raise for the first bad step, if any (this waits for the device)."""
        if self.deferred and int(self.first) >= 0:
            raise NonFiniteLoss(self.epoch, int(self.first), float(self.value))
