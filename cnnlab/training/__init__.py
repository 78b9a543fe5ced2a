"""Training: the loop, and the small pieces it composes (optimizers, schedules, augmentation,
averaging, selection, arithmetic, processes)."""
