"""Data a run cannot learn from, and recipes the data cannot take, refused (or warned about)
before a run's folder is made.

    check_data_bounds(cfg, data, model)   # a shift or crop as large as the images, a --val-size
                                          # larger than the split, a model the images do not fit

    learnable(data.classes, n_train, n_val, data.source, cfg)   # one class, or --keep best /
    # --patience with nothing to validate: refused; a split that leaves < 2 images per class: warned
"""
from __future__ import annotations

import warnings

import torch

from ..data import dataset as data_mod
from ..errors import CnnlabError, CnnlabWarning
from ..network import models
from ..text import plural
from ..training import augment, optim


def learnable(classes: list[str], n_train: int, n_val: int, source: str, cfg=None) -> None:
    """Refuse data a classifier learns nothing from (one class), and --keep best or --patience
    without a validation split (cfg: the run's TrainConfig); warn when the split leaves fewer
    than two training images per class."""
    if len(classes) < 2:
        raise CnnlabError(f"the data at {source} hold one class ({', '.join(classes)}): a classifier "
                          f"needs at least two classes to tell apart; add a folder per class under train/ and test/")
    if cfg is not None and n_val == 0 and (cfg.keep == "best" or cfg.patience is not None):
        flag = "--keep best" if cfg.keep == "best" else "--patience"
        raise CnnlabError(f"{flag} picks epochs by validation accuracy, and --val-size 0 validates "
                          f"nothing: hold out images, e.g. --val-size 10%")
    if n_train < 2 * len(classes):
        warnings.warn(f"--val-size {n_val} leaves {plural(n_train, 'image')} to train on, fewer than two per "
                      f"class ({len(classes)} classes): lower --val-size, e.g. --val-size 10%", CnnlabWarning)


def check_data_bounds(cfg, data, model: torch.nn.Module | None = None) -> None:
    """Refuse, in one line, a recipe that the data cannot take (a shift or crop as large as the
    images, a --val-size larger than the split, a model the images do not fit), before any
    folder is made. model: the run's own, else one is built here (the global RNG left as it was)."""
    data_mod.val_count(cfg.val_size, len(data.train_y))
    shape = tuple(data.train_x.shape[1:])
    augment.check_sizes(cfg.augment, shape)
    if model is None:
        with torch.random.fork_rng(devices=[]):
            model = models.create(cfg.model, len(data.classes), shape[0], shape[-1])
    optim.check(model, cfg.optimizer, cfg.epochs)  # the recipe leaves it something to train
    augment.check_crop(model, cfg.augment, shape)
