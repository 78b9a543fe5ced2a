"""Muon for conv filters: momentum orthogonalized by Newton-Schulz (after K. Jordan's
airbench94_muon, 2024; cnnlab's own code).

    orthogonalize(m, steps)       # about U V^T for m = U S V^T, in a few matrix products
    step_filters(opt)             # the Muon step of opt's groups marked "muon"; their grads are then dropped

optim.build() puts a model's conv filters (its trainable 4-D weights) in one param group marked
"muon" when the recipe's optimizer is "muon"; the other parameters stay in SGD groups, and
optim.step() runs step_filters() before SGD's own step, which then skips the filters (their
gradients are gone). For each filter tensor W (C_out, C_in, k, k) a step is:

    b <- momentum * b + g                 b: the momentum buffer ("muon_buffer" in the optimizer state)
    u <- g + momentum * b                 (Nesterov; plain: u = b)
    W <- W * sqrt(C_out) / |W|            the filters at unit mean norm: the BatchNorm after each
                                          conv makes their scale moot, so only the direction learns
    W <- W - lr * orthogonalize(u as a C_out x C_in*k*k matrix)

The orthogonalized update moves every direction of the filter bank by about the same amount,
however unequal the gradient's singular values: a rarely excited direction learns as fast as a
dominant one. No weight decay (the normalization bounds the weights).
"""
from __future__ import annotations

import torch

# A quintic iteration X <- a X + b (X X^T) X + c (X X^T)^2 X, coefficients chosen for the slope at 0
# (Jordan's): within a few steps it maps the singular values of X (scaled by its Frobenius norm,
# so all in (0, 1]) into roughly [0.7, 1.2], unless they are tiny against the largest, instead of
# converging to exactly 1, which trains as well (tests/test_muon.py measures the band).
NS_COEFFS = (3.4445, -4.7750, 2.0315)


def orthogonalize(m: torch.Tensor, steps: int = 3, eps: float = 1e-7) -> torch.Tensor:
    """About U V^T for the 2-D m = U S V^T (each singular value sent near 1), in float32."""
    a, b, c = NS_COEFFS
    x = m.float() / (m.norm() + eps)  # the largest singular value <= 1
    wide = x.shape[0] <= x.shape[1]
    if not wide:
        x = x.T  # iterate on the small Gram matrix
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x if wide else x.T


@torch.no_grad()
def step_filters(opt: torch.optim.Optimizer) -> None:
    """The Muon step of each param group marked "muon" (settings: lr, momentum, nesterov,
    ns_steps); each stepped parameter's grad is set to None so the optimizer's own step skips it."""
    for group in opt.param_groups:
        if not group.get("muon"):
            continue
        for p in group["params"]:
            if p.grad is None:
                continue
            state = opt.state[p]
            if "muon_buffer" not in state:
                state["muon_buffer"] = torch.zeros_like(p)
            buf = state["muon_buffer"]
            buf.mul_(group["momentum"]).add_(p.grad)
            u = p.grad.add(buf, alpha=group["momentum"]) if group["nesterov"] else buf
            p.mul_(len(p) ** 0.5 / p.norm())
            p.add_(orthogonalize(u.reshape(len(u), -1), group["ns_steps"]).view_as(p).to(p.dtype),
                   alpha=-group["lr"])
            p.grad = None
