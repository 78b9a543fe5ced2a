"""What a prediction looked at: Grad-CAM and integrated gradients, computed by Captum.

    cam = grad_cam(model, x, target, "conv2")          # (N, H, W): >= 0, at the input's size
    ig = integrated_gradients(model, x, target)         # (N, C, H, W): per-pixel attribution

Captum (PyTorch's interpretability library) is an optional extra: pip install 'cnnlab[explain]'.
It is imported only when one of these functions runs, so the rest of cnnlab works without it.

Grad-CAM (Selvaraju et al. 2017) at a conv layer with output A (channels k): the gradient of
the class score y_c with respect to A, averaged over the map, weighs each channel,
    cam = ReLU(sum_k mean_ij(dy_c/dA_kij) * A_k),
then the map is upsampled bilinearly to the input size. Integrated gradients (Sundararajan
et al. 2017) integrate the input gradient along the straight path from a baseline (here the
all-zero normalized image: the data's mean colour) to the image, times (image - baseline).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..errors import CnnlabError
from .inspect import module

INSTALL = "pip install 'cnnlab[explain]' (or pip install captum)"


def captum_attr():
    """captum.attr, or a one-line error saying how to install it."""
    try:
        import captum.attr
    except ImportError:
        raise CnnlabError(f"Grad-CAM and integrated gradients need Captum, which is not installed: "
                          f"{INSTALL}") from None
    return captum.attr


def available() -> bool:
    """Whether Captum can be imported."""
    try:
        captum_attr()
    except CnnlabError:
        return False
    return True


def _targets(target, n: int) -> list[int]:
    return [int(target)] * n if isinstance(target, int) else [int(t) for t in target]


def grad_cam(model: nn.Module, x: torch.Tensor, target, layer: str) -> torch.Tensor:
    """Grad-CAM of class target (an int, or one per image) at the conv layer called layer,
    upsampled bilinearly to x's height and width: (N, H, W), float32, on the CPU."""
    attr = captum_attr()
    was_training = model.training
    model.eval()
    try:
        cam = attr.LayerGradCam(model, module(model, layer)).attribute(
            x, target=_targets(target, len(x)), relu_attributions=True)
        cam = attr.LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode="bilinear")
    finally:
        model.train(was_training)
    return cam[:, 0].detach().float().cpu()


def integrated_gradients(model: nn.Module, x: torch.Tensor, target, steps: int = 32) -> torch.Tensor:
    """Integrated gradients of class target from the all-zero (mean-colour) baseline in steps
    Gauss-Legendre points: (N, C, H, W), float32, on the CPU."""
    attr = captum_attr()
    was_training = model.training
    model.eval()
    try:
        ig = attr.IntegratedGradients(model).attribute(
            x, baselines=torch.zeros_like(x), target=_targets(target, len(x)), n_steps=steps,
            internal_batch_size=max(1, len(x)) * steps)
    finally:
        model.train(was_training)
    return ig.detach().float().cpu()
