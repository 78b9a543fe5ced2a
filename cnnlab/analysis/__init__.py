"""Analysis: evaluation, metrics, statistics over seeds and the figures drawn from them.

    from cnnlab.analysis import predict_logits, confusion_matrix, welch
"""

from importlib import import_module

# name -> the module of this package that defines it; imported on first use, so that importing
# the package costs nothing and no module imports another at load time through it
_FACE = {'predict_logits': 'evaluate',
         'confusion_matrix': 'metrics',
         'per_class': 'metrics',
         'most_confused': 'metrics',
         'expected_calibration_error': 'metrics',
         'softmax': 'metrics',
         'summarize': 'stats',
         'welch': 'stats',
         'verdict': 'stats',
         'curves_figure': 'plots'}
__all__ = sorted(_FACE)


def __getattr__(name: str):
    if name in _FACE:
        return getattr(import_module(f"{__name__}.{_FACE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
