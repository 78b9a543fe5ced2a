"""TensorBoard logging of a run: the scalars of history.csv, one point per epoch.

    board = open_writer(Path("runs/x"))     # runs/x/tensorboard/
    add_row(board, {"epoch": 1, "avg_loss": 1.6, "val_acc": 45.0, "val_loss": 1.5, "lr": 0.001})
    board.close()

`cnnlab train --tensorboard` or cnnlab.train(..., tensorboard=True); then
`tensorboard --logdir runs/`. Needs the optional extra: pip install 'cnnlab[tensorboard]'.
"""
from __future__ import annotations

import math
from pathlib import Path

from ..errors import CnnlabError

FOLDER = "tensorboard"
# history.csv's column -> TensorBoard's tag
TAGS = {"avg_loss": "loss/train", "val_loss": "loss/validation", "val_acc": "accuracy/validation",
        "lr": "learning_rate", "elapsed_s": "time/elapsed_s"}


def require() -> None:
    """Refuse --tensorboard, before any run folder is made, where the package is missing."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise CnnlabError("--tensorboard needs the tensorboard package: pip install 'cnnlab[tensorboard]', "
                          "or drop --tensorboard") from None


def open_writer(run_dir: Path):
    """A torch.utils.tensorboard SummaryWriter writing into run_dir/tensorboard/."""
    require()
    from torch.utils.tensorboard import SummaryWriter
    return SummaryWriter(log_dir=str(Path(run_dir) / FOLDER))


def add_row(writer, row: dict) -> None:
    """One epoch's history row as scalars at step = its epoch (undefined values are left out)."""
    for key, tag in TAGS.items():
        value = row.get(key)
        if value is not None and not math.isnan(value):
            writer.add_scalar(tag, value, int(row["epoch"]))
    writer.flush()
