"""Analysis: evaluation, metrics, statistics over seeds and the figures drawn from them.

    from cnnlab.analysis import predict_logits, confusion_matrix, welch
"""

from ..lazy import face

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
__getattr__, __dir__ = face(__name__, _FACE)
