"""Weight averaging: the running mean of the parameters after each step.

Averaging the *weights* along the trajectory (Polyak-Ruppert averaging) is
not averaging the *gradients*: a larger batch averages gradients before a
step and changes where the steps go, while the weight average leaves the
steps as they are and reports the mean of the points they visit, which
cancels much of the noise of the last steps around a minimum.
"""

import numpy as np


class WeightAverage:
    """Running mean ``m_k = m_{k-1} + (w_k - m_{k-1}) / k`` of the weights.

    Parameters
    ----------
    n_parameters : int
    dtype : numpy dtype
    start : int, default=1
        The weights after a step enter the mean once this many samples have
        been seen, counting the step's own batch (scikit-learn's
        ``SGDClassifier(average=int)``); 1 averages from the first step.
    """

    def __init__(self, n_parameters, dtype, start=1):
        self.start = start
        self.mean = np.zeros(n_parameters, dtype)
        self.n_averaged = 0
        self.samples_seen = 0
        self._difference = np.empty(n_parameters, dtype)

    def update(self, parameters, n_rows):
        """Account for one step over ``n_rows`` rows that left ``parameters``."""
        self.samples_seen += n_rows
        if self.samples_seen < self.start:
            return
        self.n_averaged += 1
        difference = np.subtract(parameters, self.mean, out=self._difference)
        difference /= self.n_averaged
        self.mean += difference
