"""Data a run cannot learn from, refused or warned about before its folder is made.

    learnable(data.classes, n_train, n_val, data.source)   # one class: refused; a split that
                                                            # leaves < 2 images per class: warned
"""
from __future__ import annotations

import warnings

from ..errors import CnnlabError, CnnlabWarning
from ..text import plural


def learnable(classes: list[str], n_train: int, n_val: int, source: str) -> None:
    """Refuse data a classifier learns nothing from (one class); warn when the split leaves
    fewer than two training images per class."""
    if len(classes) < 2:
        raise CnnlabError(f"the data at {source} hold one class ({', '.join(classes)}): a classifier "
                          f"needs at least two classes to tell apart; add a folder per class under train/ and test/")
    if n_train < 2 * len(classes):
        warnings.warn(f"--val-size {n_val} leaves {plural(n_train, 'image')} to train on, fewer than two per "
                      f"class ({len(classes)} classes): lower --val-size, e.g. --val-size 10%", CnnlabWarning)
