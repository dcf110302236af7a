"""Diagnostics of a fitted network: how noisy is its gradient?

:func:`gradient_noise_scale` computes the *simple noise scale* of
McCandlish et al. (2018), the batch size at which the noise of a minibatch
gradient is as large as the gradient itself. It is a guide for choosing
``batch_size``: it predicts the *critical batch size*, beyond which larger
batches stop reducing the number of steps training needs.

By default it answers the question training asks: how noisy are the
minibatches that ``fit`` draws from *this* training set, without
replacement? The population estimate of the paper, which takes the training
set as an i.i.d. sample from a larger population, is available with
``method='population'``.

References
----------
S. McCandlish, J. Kaplan, D. Amodei and the OpenAI Dota Team, "An Empirical
Model of Large-Batch Training", arXiv:1812.06162, 2018.
"""

import math
from dataclasses import dataclass

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ._base import BaseBatchMLP, final_estimator
from ._workspace import chunks
from .per_example import per_example_gradient_norms
from .reduction import reduction_coefficients

__all__ = ["NoiseScale", "gradient_noise_scale"]

_METHODS = ("training", "population")


@dataclass(frozen=True)
class NoiseScale:
    """The result of :func:`gradient_noise_scale`.

    The fields mean different things for the two methods; ``method`` says
    which one was computed.

    Attributes
    ----------
    b_simple : float
        The simple noise scale, in rows. For ``method='training'``, the batch
        size at which a minibatch drawn without replacement from the
        ``n_samples`` rows, as training draws it, has noise
        ``E ||g_B - E g_B||^2`` equal to ``||E g_B||^2``:
        ``trace_covariance / (gradient_norm_squared + trace_covariance /
        n_samples)``, finite whenever the gradient is not zero and at most
        ``n_samples``. For ``method='population'``,
        ``trace_covariance / gradient_norm_squared`` (in units of sample
        weight), ``inf`` when ``gradient_norm_squared <= 0``.
    trace_covariance : float
        The total variance of one row's gradient, ``tr(Sigma)``. For
        ``method='training'``, the sample covariance (divisor
        ``n_samples - 1``) of the training rows' gradients as the reduction
        weighs them (of the ``g_i`` themselves without sample weights). For
        ``method='population'``, the unbiased estimate with the sample
        weights taken as frequency weights (divisor ``total_weight - 1``).
    gradient_norm_squared : float
        For ``method='training'``, ``||grad E||^2``, the squared norm of the
        gradient of the training objective, computed exactly. For
        ``method='population'``, an unbiased estimate of the squared norm of
        the population gradient, ``||grad E||^2 - trace_covariance /
        total_weight``; it can be negative (or tiny) near a minimum, where
        the noise dominates.
    mean_gradient_norm_squared : float
        ``||grad E||^2`` on the data given, for both methods.
    n_samples : int
        Number of rows the estimate used.
    total_weight : float
        ``S``, their total sample weight (``n_samples`` without weights).
    method : {'training', 'population'}
        Which noise scale was computed (see :func:`gradient_noise_scale`).
    """

    b_simple: float
    trace_covariance: float
    gradient_norm_squared: float
    mean_gradient_norm_squared: float
    n_samples: int
    total_weight: float
    method: str = "training"

    def noise_to_signal(self, batch_size):
        """The predicted noise-to-signal ratio of a minibatch of ``batch_size`` rows.

        ``E ||g_B - E g_B||^2 / ||E g_B||^2`` for the minibatch gradient
        ``g_B``: ``(trace_covariance / gradient_norm_squared) * (1 /
        batch_size - 1 / n_samples)`` for ``method='training'`` (0 for the
        whole training set), ``trace_covariance / (gradient_norm_squared *
        batch_size)`` for ``method='population'``. It is 1 at ``b_simple``,
        and the same for both reductions.

        Parameters
        ----------
        batch_size : float
            Rows per batch (units of sample weight for ``'population'``).

        Returns
        -------
        ratio : float
            ``inf`` when ``gradient_norm_squared <= 0``.

        Examples
        --------
        >>> from skbatchnet.diagnostics import NoiseScale
        >>> scale = NoiseScale(b_simple=8.0, trace_covariance=1.8,
        ...                    gradient_norm_squared=0.2,
        ...                    mean_gradient_norm_squared=0.2,
        ...                    n_samples=72, total_weight=72.0)
        >>> scale.noise_to_signal(8), scale.noise_to_signal(72)
        (1.0, 0.0)
        """
        if not self.gradient_norm_squared > 0:
            return math.inf
        ratio = self.trace_covariance / self.gradient_norm_squared
        if self.method == "training":
            return ratio * (1.0 / batch_size - 1.0 / self.n_samples)
        return ratio / batch_size


def gradient_noise_scale(estimator, X, y, sample_weight=None, *, method="training"):
    r"""Compute the simple gradient noise scale at the current weights.

    The simple noise scale (McCandlish et al., 2018) is the batch size at
    which the noise of a minibatch gradient is as large as the squared norm
    of the gradient it estimates.

    **What it means for batch_size.** ``B_simple`` predicts the *critical
    batch size*. Well below it, training is step-limited: the noise
    dominates each step, and doubling the batch roughly halves the number of
    steps needed (at a suitably larger learning rate), for about the same
    number of examples processed. Well above it, training is data-limited:
    each step is already nearly the exact gradient, so a larger batch costs
    more compute without saving steps. A good ``batch_size`` is of the order
    of ``B_simple``. It usually grows as training proceeds (the gradient
    shrinks faster than the noise), so evaluate it at several points, e.g.
    between calls to ``partial_fit``.

    **method='training'** (the default) answers the question for training
    on the data given. A batch of ``B`` rows is drawn as ``fit`` draws it:
    ``B`` of the ``n`` rows uniformly at random without replacement (each
    batch of a shuffled epoch is such a draw), every row with the same
    chance whatever its sample weight, and reduced with the estimator's
    ``gradient_reduction``. With the per-example gradients
    ``g_i = grad(loss_i) + (alpha / S) W`` and ``G = grad E``, the gradient
    of the training objective (see :mod:`skbatchnet.backprop`), the batch
    gradient ``g_B`` has::

        E ||g_B - E g_B||^2 / ||E g_B||^2 = (tr / ||G||^2) (1/B - 1/n)

    where ``tr`` is the trace of the sample covariance (divisor ``n - 1``)
    of the rows' gradients. With the rows' mean squared deviation
    ``sigma2 = (n - 1) tr / n`` this is the familiar ``sigma2 / B`` times the
    finite-population factor ``(n - B) / (n - 1)``. It equals 1 at::

        B_simple = tr / (||G||^2 + tr / n).

    ``G`` is computed exactly, not estimated, so ``B_simple`` is finite
    whenever ``G != 0``, at most ``n``, and equal to ``n`` only when
    ``G = 0`` (the full batch has no noise).

    With sample weights ``s_i`` (total ``S``, mean ``S / n``), write
    ``w_i = s_i n / S``. For ``'sum'`` the batch gradient
    ``sum_{i in B} s_i g_i`` is ``B S / n`` times the mean of ``B`` draws of
    ``w_i g_i``, whose mean over the rows is ``G``, so
    ``tr = sum_i ||w_i g_i - G||^2 / (n - 1)`` and the formula is exact. For
    ``'mean'`` the batch gradient ``sum_{i in B} s_i g_i / sum_{i in B} s_i``
    is a ratio, and the formula is its first-order (delta method) noise,
    with ``tr = sum_i w_i^2 ||g_i - G||^2 / (n - 1)``: exact for equal
    weights, an approximation with an error of relative order ``1 / B``
    otherwise. Without weights (or with equal ones) both reductions give the
    sample covariance of the ``g_i``, and ``B_simple`` does not depend on the
    reduction: a ``'sum'`` batch is ``B`` times the ``'mean'`` batch of the
    same rows, which multiplies its noise and its squared mean alike by
    ``B^2``. Rows are drawn whatever their weight, so integer weights are
    not the same as repeated rows here (they are for ``'population'``).

    **method='population'** takes the training rows as an i.i.d. sample
    from a larger population, with the sample weights as frequency weights,
    and estimates the noise scale ``tr(Sigma) / |G_pop|^2`` of one example
    drawn from that population::

        G_hat    = (1/S) sum_i s_i g_i                  (= grad E)
        tr_hat   = (sum_i s_i ||g_i||^2 - S ||G_hat||^2) / (S - 1)
        G2_hat   = ||G_hat||^2 - tr_hat / S
        B_simple = tr_hat / G2_hat

    ``tr_hat`` is the unbiased sample variance, and ``G2_hat`` is unbiased
    because ``E ||G_hat||^2 = |G_pop|^2 + tr(Sigma) / S`` for i.i.d.
    examples; the ratio is consistent, not unbiased. The data resolve it only
    well below ``S``: near a minimum ``G2_hat`` becomes tiny or negative, and
    ``B_simple`` is then ``inf`` (the population gradient is
    indistinguishable from noise at any batch size the data allow), even
    though ``||grad E||^2`` is known and positive. Compare
    ``1 / B_simple = ||G_hat||^2 / tr_hat - 1 / S`` with the training
    answer's ``||G||^2 / tr + 1 / n``.

    Per-example gradients are never formed: the squared norms
    ``||g_i||^2`` come from :func:`skbatchnet.per_example.per_example_gradient_norms`
    and the weighted sums of the ``g_i`` from
    :meth:`skbatchnet.backprop.Network.gradient`, chunk by chunk, so
    memory stays bounded by scikit-learn's ``working_memory``. The
    computation runs in float64 whatever the dtype of the fitted weights.

    Parameters
    ----------
    estimator : BatchMLPClassifier, BatchMLPRegressor or Pipeline
        A fitted estimator, or a fitted pipeline ending with one (``X`` is
        transformed by all steps but the last). Its current ``coefs_`` and
        ``intercepts_`` are used, so the diagnostic can be taken in the middle
        of training.
    X : {array-like, sparse matrix} of shape (n_samples, n_features)
        Data, as passed to ``fit``. Use the training set: with ``alpha > 0``
        each example's penalty share is ``alpha / S`` for the ``S`` of the
        data given.
    y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        Targets, encoded as ``fit`` encodes them (class labels for a
        classifier).
    sample_weight : array-like of shape (n_samples,), default=None
        Sample weights, as passed to ``fit``. A classifier's
        ``class_weight`` multiplies them, as in ``fit``.
    method : {'training', 'population'}, default='training'
        ``'training'``: the noise of the minibatches ``fit`` draws from the
        data given. ``'population'``: the i.i.d. estimate of the noise of
        examples drawn from a population the data are a sample of.

    Returns
    -------
    result : NoiseScale
        ``b_simple`` and its parts, with ``method`` recording which noise
        scale was computed.

    Raises
    ------
    NotFittedError
        If the estimator is not fitted.
    ValueError
        If ``method`` is unknown, ``X`` has a different number of features
        than the estimator was fitted with, ``y`` does not match it, there
        are fewer than 2 rows or no positive total weight
        (``'training'``), or the total weight is at most 1
        (``'population'``).

    References
    ----------
    S. McCandlish, J. Kaplan, D. Amodei and the OpenAI Dota Team, "An
    Empirical Model of Large-Batch Training", arXiv:1812.06162, 2018.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skbatchnet import BatchMLPClassifier
    >>> from skbatchnet.diagnostics import gradient_noise_scale
    >>> X, y = load_digits(return_X_y=True)
    >>> model = make_pipeline(
    ...     StandardScaler(), BatchMLPClassifier(max_iter=1, random_state=0)
    ... ).fit(X, y)
    >>> result = gradient_noise_scale(model, X, y)
    >>> result.method, result.n_samples
    ('training', 1797)
    >>> bool(0 < result.b_simple < result.n_samples)
    True
    >>> round(result.noise_to_signal(result.b_simple), 12)
    1.0

    The population estimate is larger: it also counts the noise of the
    training set as a sample of the population.

    >>> population = gradient_noise_scale(model, X, y, method="population")
    >>> bool(population.b_simple > result.b_simple)
    True
    """
    mlp, X = final_estimator(estimator, X)
    if not isinstance(mlp, BaseBatchMLP):
        raise TypeError(
            "gradient_noise_scale needs a fitted BatchMLPClassifier or "
            "BatchMLPRegressor, or a Pipeline ending with one; got "
            f"{type(mlp).__name__}."
        )
    check_is_fitted(mlp)
    # The objective's arrays as fit builds them, in float64 for the sums.
    context = mlp.training_context()
    data = context.objective(X, y, sample_weight, dtype=np.float64)
    X, Y, sample_weight = data.X, data.Y, data.sample_weight

    if method not in _METHODS:
        raise ValueError(f"method must be 'training' or 'population', got {method!r}.")
    n = X.shape[0]
    total = float(n if sample_weight is None else math.fsum(sample_weight))
    if method == "population" and not total > 1:
        raise ValueError(
            "The population noise scale needs a total sample weight greater than "
            f"1 to estimate a variance; got {total!r} ({n} rows). Pass more rows "
            "or use method='training'."
        )
    if method == "training" and not (n > 1 and total > 0):
        raise ValueError(
            "The training noise scale needs at least 2 rows with a positive total "
            f"sample weight; got {n} rows of total weight {total!r}."
        )
    reduction = getattr(mlp, "gradient_reduction", "mean")
    # For 'mean' with unequal weights the noise needs sum_i s_i^2 g_i as well.
    squared_weights = (
        method == "training" and reduction == "mean" and sample_weight is not None
    )

    net = context.fitted_network(dtype=np.float64)
    chunk = net.chunk_rows()
    workspace = net.workspace(min(n, chunk))

    def weighted_sum(X_chunk, Y_chunk, weights):
        # 'sum' with total_weight=S adds the penalty share (alpha / S) W per
        # unit of the weights given: sum_i c_i g_i in full.
        _, gradient = net.gradient(
            X_chunk,
            Y_chunk,
            reduction_coefficients(weights, X_chunk.shape[0], "sum"),
            sample_weight=weights,
            alpha=mlp.alpha,
            total_weight=total,
            workspace=workspace,
        )
        return gradient

    gradient_sum = np.zeros_like(net.parameters)  # sum_i s_i g_i
    squared_gradient_sum = np.zeros_like(net.parameters)  # sum_i s_i^2 g_i
    norm_sum = 0.0  # sum_i s_i ||g_i||^2
    squared_norm_sum = 0.0  # sum_i s_i^2 ||g_i||^2
    for rows in chunks(n, chunk):
        X_chunk, Y_chunk = X[rows], Y[rows]
        w_chunk = None if sample_weight is None else sample_weight[rows]
        norms = per_example_gradient_norms(
            net, X_chunk, Y_chunk, alpha=mlp.alpha, total_weight=total
        )
        squared = norms * norms
        if w_chunk is None:
            norm_sum += float(squared.sum())
        else:
            norm_sum += float(np.dot(w_chunk, squared))
            squared_norm_sum += float(np.dot(w_chunk * w_chunk, squared))
        gradient_sum += weighted_sum(X_chunk, Y_chunk, w_chunk)
        if squared_weights:
            squared_gradient_sum += weighted_sum(X_chunk, Y_chunk, w_chunk * w_chunk)

    gradient = gradient_sum / total  # grad E
    gradient_norm_squared = float(np.dot(gradient, gradient))
    if method == "population":
        # Rounding can leave a tiny negative value when all g_i are equal.
        trace = max((norm_sum - total * gradient_norm_squared) / (total - 1), 0.0)
        signal = gradient_norm_squared - trace / total
        b_simple = trace / signal if signal > 0 else math.inf
    else:
        # sum_i ||u_i||^2 for the rows' terms u_i whose mean over B draws
        # without replacement is the batch gradient, up to its constant
        # factor, less their mean G (see the docstring); w_i = s_i / mean_weight.
        mean_weight = total / n
        if sample_weight is None:
            spread = norm_sum - n * gradient_norm_squared
        elif reduction == "sum":
            # u_i = w_i g_i - G, and sum_i w_i g_i = n G.
            spread = squared_norm_sum / mean_weight**2 - n * gradient_norm_squared
        else:
            # u_i = w_i (g_i - G): sum_i w_i^2 ||g_i||^2
            #   - 2 G . sum_i w_i^2 g_i + ||G||^2 sum_i w_i^2.
            spread = (
                squared_norm_sum
                - 2 * float(np.dot(gradient, squared_gradient_sum))
                + gradient_norm_squared * float(np.dot(sample_weight, sample_weight))
            ) / mean_weight**2
        trace = max(spread / (n - 1), 0.0)
        signal = gradient_norm_squared
        denominator = signal + trace / n
        b_simple = trace / denominator if denominator > 0 else 0.0
    return NoiseScale(
        b_simple=float(b_simple),
        trace_covariance=float(trace),
        gradient_norm_squared=float(signal),
        mean_gradient_norm_squared=gradient_norm_squared,
        n_samples=int(n),
        total_weight=total,
        method=method,
    )
