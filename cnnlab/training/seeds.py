"""Which seeds a run takes: integers 0..MAX_SEED, checked before anything is made.

    check_seed(cfg.seed)            # a one-line CnnlabError for -1 or 20000000000000
    check_seed(seed, "--seeds")     # the flag named in the message

A run's randomness is a pure function of (seed, epoch, step): the batch order seeds
torch.Generator.manual_seed with seed * 1_000_003 + epoch (cnnlab.training.loop.epoch_permutation),
which must stay below 2**64, and numpy's generators (sample grids) take no negative seed.
2**32 seeds leave room for any epoch count.
"""
from __future__ import annotations

from ..errors import CnnlabError

MAX_SEED = 2**32 - 1


def check_seed(seed, flag: str = "--seed") -> int:
    """seed, if it is one the run's randomness can take (0..MAX_SEED); else a one-line CnnlabError."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise CnnlabError(f"{flag} must be an integer from 0 to {MAX_SEED} (2**32 - 1), got {seed!r}")
    return seed
