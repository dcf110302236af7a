"""skbatchnet: scikit-learn compatible neural networks with explicit minibatching.

The estimators :class:`BatchMLPClassifier` and :class:`BatchMLPRegressor` are
drop-in replacements for scikit-learn's MLPs; the public backprop core lives
in :mod:`skbatchnet.backprop` and :mod:`skbatchnet.batching`.
"""

from ._mlp import BatchMLPClassifier, BatchMLPRegressor
from .backprop import Network, reduction_coefficients
from .batching import Minibatcher
from .diagnostics import NoiseScale, gradient_noise_scale
from .per_example import per_example_input_gradients
from .plotting import LossCurveDisplay
from .schedules import GeometricBatchSize, StepBatchSize

__version__ = "0.1.0"

__all__ = [
    "BatchMLPClassifier",
    "BatchMLPRegressor",
    "GeometricBatchSize",
    "LossCurveDisplay",
    "Minibatcher",
    "Network",
    "NoiseScale",
    "StepBatchSize",
    "gradient_noise_scale",
    "per_example_input_gradients",
    "reduction_coefficients",
    "__version__",
]
