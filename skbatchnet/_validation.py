"""Input checks shared by the estimators; each error names the fix."""

import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.utils.validation import _check_sample_weight


def check_hidden_layer_sizes(hidden_layer_sizes):
    """Return the hidden layer sizes as a list of positive ints."""
    sizes = hidden_layer_sizes
    if isinstance(sizes, Integral) and not isinstance(sizes, bool):
        sizes = [sizes]
    try:
        sizes = list(sizes)
    except TypeError:
        sizes = None
    if sizes is None or not all(
        isinstance(s, Integral) and not isinstance(s, bool) and s >= 1 for s in sizes
    ):
        raise ValueError(
            "hidden_layer_sizes must be a positive int or a sequence of positive "
            f"ints such as (100,) or (64, 32), got {hidden_layer_sizes!r}."
        )
    return [int(s) for s in sizes]


def check_sample_weight(sample_weight, X):
    """Validate sample weights: right length, finite, non-negative, not all 0.

    Returns None for None, so unweighted data keeps the cheaper unweighted path.
    """
    if sample_weight is None:
        return None
    sample_weight = _check_sample_weight(sample_weight, X, dtype=X.dtype)
    if not np.all(np.isfinite(sample_weight)):
        raise ValueError(
            "sample_weight contains NaN or infinity; give every example a finite, "
            "non-negative weight."
        )
    if np.any(sample_weight < 0):
        bad = np.flatnonzero(sample_weight < 0)
        raise ValueError(
            f"sample_weight must be non-negative, got {sample_weight[bad[0]]!r} at "
            f"index {bad[0]} ({bad.size} negative in all). Drop those examples or "
            "give them weight 0."
        )
    # Totals are summed in float64 wherever training takes them: float32
    # weights may sum past float32's range (3.4e38).
    total = np.sum(sample_weight, dtype=np.float64)
    if not total > 0:
        raise ValueError(
            "sample_weight sums to 0, so the objective is undefined; at least one "
            "example needs a positive weight."
        )
    return sample_weight


def merge_class_weight(sample_weight, class_weight, X):
    """The weights of the objective: sample weights times class weights.

    Either may be None; the product is validated like ``sample_weight``.
    """
    if class_weight is None:
        return sample_weight
    class_weight = class_weight.astype(X.dtype, copy=False)
    if sample_weight is not None:
        class_weight *= sample_weight
    return check_sample_weight(class_weight, X)


def check_class_weight(class_weight, n_outputs):
    """Check ``class_weight`` against ``y``: a dict per output, finite weights.

    ``n_outputs`` is the number of columns of a multilabel ``y`` and 0 (or
    False) for a single-output ``y``.
    """
    if isinstance(class_weight, str):
        return
    if n_outputs:
        if not isinstance(class_weight, list) or len(class_weight) != n_outputs:
            raise ValueError(
                f"class_weight for a multilabel y with {n_outputs} outputs must be "
                f"'balanced' or a list of {n_outputs} dicts, one per output (such "
                f"as [{{0: 1, 1: 2}}] * {n_outputs}), got {class_weight!r}."
            )
        dicts = class_weight
    elif isinstance(class_weight, list):
        raise ValueError(
            "class_weight is a list, which is for a multilabel y (one dict per "
            "output); for this single-output y pass one dict {label: weight} or "
            "'balanced'."
        )
    else:
        dicts = [class_weight]
    for weights in dicts:
        if not isinstance(weights, dict):
            raise ValueError(
                f"class_weight must hold dicts {{label: weight}}, got {weights!r}."
            )
        for label, weight in weights.items():
            if not (isinstance(weight, Real) and np.isfinite(weight) and weight >= 0):
                raise ValueError(
                    f"class_weight gives class {label!r} the weight {weight!r}; "
                    "class weights must be finite, non-negative numbers."
                )


def stratification(labels, fraction):
    """``labels`` if the split can be stratified by them, else None (warned).

    Stratification needs two examples per class and room for every class on
    both sides. scikit-learn stratifies binary targets and refuses those it
    cannot stratify; it does not stratify multiclass targets, which here fall
    back to a random split.
    """
    classes, counts = np.unique(labels, return_counts=True)
    n_val = int(np.ceil(fraction * labels.shape[0]))
    room = min(n_val, labels.shape[0] - n_val)
    if counts.min() >= 2 and room >= counts.size:
        return labels
    rare = classes.tolist()[int(np.argmin(counts))]
    problem = (
        f"class {rare!r} has {counts.min()} member(s), and stratification needs 2"
        if counts.min() < 2
        else f"{room} rows on the smaller side cannot hold all {counts.size} classes"
    )
    if counts.size <= 2:
        raise ValueError(
            "With early_stopping=True the validation split of a binary target is "
            f"stratified, but {problem}. Add examples of the rare class, change "
            "validation_fraction, or set early_stopping=False."
        )
    warnings.warn(
        f"The early-stopping validation split cannot be stratified: {problem}. "
        "It is drawn at random instead, as scikit-learn draws it for multiclass "
        "targets.",
        UserWarning,
        stacklevel=5,
    )
    return None
