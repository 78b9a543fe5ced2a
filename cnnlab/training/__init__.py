"""Training: the loop, and the small pieces it composes (optimizers, schedules, augmentation,
averaging, selection, arithmetic, processes), each a module of its own.

    from cnnlab.training import TrainConfig, prepare, train
    cfg = TrainConfig(epochs=2)
    state = train(cfg, model, prepare(data, cfg, device))   # the plain loop (loop.py)
"""

from ..lazy import face

# name -> the module of this package that defines it; imported on first use, so that importing
# the package costs nothing and no module imports another at load time through it
_FACE = {'TrainConfig': 'loop',
         'TrainState': 'loop',
         'Prepared': 'loop',
         'prepare': 'loop',
         'setup': 'loop',
         'train': 'loop',
         'train_epoch': 'loop',
         'total_steps': 'loop',
         'epoch_permutation': 'loop',
         'pick_device': 'loop',
         'lr_factor': 'schedules'}
__all__ = sorted(_FACE)
__getattr__, __dir__ = face(__name__, _FACE)
