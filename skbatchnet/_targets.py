"""Targets as the network sees them: the encoding modes and the one-hot code.

The estimators validate and encode ``y`` in one of the :data:`ENCODING_MODES`;
the encoded targets are a 2-D float array, one column per network output.
:class:`TargetEncoding` applies a fitted encoding to more targets of the same
kind, such as the row blocks Dask workers hold.
"""

import numpy as np

__all__ = ["ENCODING_MODES", "TargetEncoding", "check_encoding_mode", "one_hot"]

# What each mode of ``_encode_targets`` does with the encoding: whether it
# learns it (and n_features_in_, classes_) or applies the fitted one.
ENCODING_MODES = {
    "fit": "learn the encoding from y (a fit that starts afresh)",
    "partial_fit": "learn the encoding from classes (partial_fit's first call)",
    "refit": "apply the fitted encoding; y must show exactly its classes "
    "(a warm-started fit)",
    "continue": "apply the fitted encoding; y's labels must be known to it "
    "(partial_fit's later calls)",
    "apply": "apply the fitted encoding; y's labels must be known to it "
    "(tools that evaluate the objective of a fitted model)",
}

# The modes that learn the encoding; the others apply the fitted one.
LEARNING_MODES = ("fit", "partial_fit")


def check_encoding_mode(mode):
    """``mode`` if it is one of :data:`ENCODING_MODES`, else a ValueError."""
    if mode not in ENCODING_MODES:
        raise ValueError(f"mode must be one of {sorted(ENCODING_MODES)}, got {mode!r}.")
    return mode


def one_hot(binarizer, y, dtype):
    """The targets as the fitted ``binarizer`` encodes them, in ``dtype``.

    Multiclass labels (all known to the binarizer, which the callers check)
    are encoded directly: ``LabelBinarizer.transform`` builds an integer
    matrix that then needs converting, a cost felt in every ``fit`` on
    large data.
    """
    if binarizer.y_type_ != "multiclass":
        return binarizer.transform(y).astype(dtype, copy=False)
    Y = np.zeros((len(y), len(binarizer.classes_)), dtype)
    Y[np.arange(len(y)), np.searchsorted(binarizer.classes_, y)] = 1
    return Y


class TargetEncoding:
    """A fitted target encoding, applied as ``encoding(y, dtype)``.

    Parameters
    ----------
    binarizer : LabelBinarizer or None
        The classifier's fitted binarizer; None for real targets, which are
        only made 2-D.

    Picklable, so that it can travel to where the targets are.
    """

    def __init__(self, binarizer=None):
        self.binarizer = binarizer

    def __call__(self, y, dtype):
        if self.binarizer is not None:
            return one_hot(self.binarizer, y, dtype)
        Y = np.asarray(y, dtype=dtype)
        return Y.reshape(-1, 1) if Y.ndim == 1 else Y
