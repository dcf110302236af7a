"""Diagnostics of a fitted network: how noisy is its gradient?

:func:`gradient_noise_scale` estimates the *simple noise scale* of
McCandlish et al. (2018), the batch size at which the noise of a minibatch
gradient is as large as the gradient itself. It is a guide for choosing
``batch_size``: it predicts the *critical batch size*, beyond which larger
batches stop reducing the number of steps training needs.

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


@dataclass(frozen=True)
class NoiseScale:
    """The result of :func:`gradient_noise_scale`.

    Attributes
    ----------
    b_simple : float
        The simple noise scale ``trace_covariance / gradient_norm_squared``,
        in examples (units of sample weight when weights are given); ``inf``
        when ``gradient_norm_squared <= 0``.
    trace_covariance : float
        Unbiased estimate of ``tr(Sigma)``, the total variance of one
        example's gradient.
    gradient_norm_squared : float
        Unbiased estimate of ``|G|^2``, the squared norm of the true gradient.
        It can be negative (or tiny) near a minimum, where the noise dominates.
    mean_gradient_norm_squared : float
        ``||G_hat||^2``, the squared norm of the gradient of the objective on
        the data given (biased upwards by ``trace_covariance / total_weight``
        as an estimate of ``|G|^2``).
    n_samples : int
        Number of rows the estimate used.
    total_weight : float
        ``S``, their total sample weight (``n_samples`` without weights).
    """

    b_simple: float
    trace_covariance: float
    gradient_norm_squared: float
    mean_gradient_norm_squared: float
    n_samples: int
    total_weight: float


def gradient_noise_scale(estimator, X, y, sample_weight=None):
    r"""Estimate the simple gradient noise scale at the current weights.

    The simple noise scale (McCandlish et al., 2018) compares the noise of
    one example's gradient with the gradient itself::

        B_simple = tr(Sigma) / |G|^2

    where ``G`` is the true gradient of the training objective ``E`` (see
    :mod:`skbatchnet.backprop`) and ``Sigma`` the covariance of the
    per-example gradients ``g_i = grad(loss_i) + (alpha / S) W``. A minibatch
    of ``B`` examples has gradient noise ``tr(Sigma) / B``; at
    ``B = B_simple`` the noise is as large as ``|G|^2``.

    **What it means for batch_size.** ``B_simple`` predicts the *critical
    batch size*. Well below it, training is step-limited: the noise
    dominates each step, and doubling the batch roughly halves the number of
    steps needed (at a suitably larger learning rate), for about the same
    number of examples processed. Well above it, training is data-limited:
    each step is already nearly the true gradient, so a larger batch costs
    more compute without saving steps. A good ``batch_size`` is of the order
    of ``B_simple``. It usually grows as training proceeds (the gradient
    shrinks faster than the noise), so evaluate it at several points, e.g.
    between calls to ``partial_fit``.

    **The estimator.** With sample weights ``s_i`` taken as frequency
    weights (``s_i = 1`` without weights), ``S = sum_i s_i`` and::

        G_hat    = (1/S) sum_i s_i g_i
        tr_hat   = (sum_i s_i ||g_i||^2 - S ||G_hat||^2) / (S - 1)
        G2_hat   = ||G_hat||^2 - tr_hat / S
        B_simple = tr_hat / G2_hat

    ``tr_hat`` is the unbiased sample variance, and ``G2_hat`` is unbiased
    because ``E ||G_hat||^2 = |G|^2 + tr(Sigma) / S`` for i.i.d. examples.
    The ratio is not itself unbiased, but consistent. The data resolve
    ``B_simple`` only well below ``S``: the correction ``tr_hat / S`` is
    ``B_simple / S`` times ``G2_hat``, so as ``B_simple`` approaches ``S``
    the estimate is dominated by sampling noise. Near a minimum the noise
    dominates and ``G2_hat`` becomes tiny or negative: ``B_simple`` is then
    unreliable, and this function returns ``inf`` whenever ``G2_hat <= 0``
    (the gradient is indistinguishable from noise at any batch size the data
    allow).

    Per-example gradients are never formed: the squared norms
    ``||g_i||^2`` come from :func:`skbatchnet.per_example.per_example_gradient_norms`
    and ``sum_i s_i g_i`` from :meth:`skbatchnet.backprop.Network.batch_gradient`,
    chunk by chunk, so memory stays bounded by scikit-learn's
    ``working_memory``. The computation runs in float64 whatever the dtype of
    the fitted weights.

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
        Frequency weights; integer weights give the same result as repeating
        rows. A classifier's ``class_weight`` multiplies them, as in ``fit``.

    Returns
    -------
    result : NoiseScale
        ``b_simple``, ``trace_covariance``, ``gradient_norm_squared``,
        ``mean_gradient_norm_squared``, ``n_samples`` and ``total_weight``.

    Raises
    ------
    NotFittedError
        If the estimator is not fitted.
    ValueError
        If ``X`` has a different number of features than the estimator was
        fitted with, ``y`` does not match it, or the total weight is at most 1.

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
    >>> result.n_samples
    1797
    >>> bool(0 < result.b_simple < result.n_samples)
    True
    >>> bool(result.trace_covariance > result.gradient_norm_squared > 0)
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
    X, Y, _, sample_weight, _ = mlp._objective_data(
        X, y, sample_weight, dtype=np.float64
    )
    n = X.shape[0]
    total = float(n if sample_weight is None else math.fsum(sample_weight))
    if not total > 1:
        raise ValueError(
            "The gradient noise scale needs a total sample weight greater than 1 "
            f"to estimate a variance; got {total!r} ({n} rows)."
        )

    net = mlp._network(dtype=np.float64)
    chunk = net.chunk_rows()
    workspace = net.workspace(min(n, chunk))
    gradient_sum = np.zeros_like(net.parameters)  # sum_i s_i g_i
    squared_norm_sum = 0.0  # sum_i s_i ||g_i||^2
    for rows in chunks(n, chunk):
        X_chunk, Y_chunk = X[rows], Y[rows]
        w_chunk = None if sample_weight is None else sample_weight[rows]
        norms = per_example_gradient_norms(
            net, X_chunk, Y_chunk, alpha=mlp.alpha, total_weight=total
        )
        squared = norms * norms
        squared_norm_sum += float(
            squared.sum() if w_chunk is None else np.dot(w_chunk, squared)
        )
        # 'sum' with total_weight=S adds this chunk's share of the penalty,
        # (alpha / S) W per unit of weight; over all chunks, alpha W.
        _, chunk_gradient = net.gradient(
            X_chunk,
            Y_chunk,
            reduction_coefficients(w_chunk, X_chunk.shape[0], "sum"),
            sample_weight=w_chunk,
            alpha=mlp.alpha,
            total_weight=total,
            workspace=workspace,
        )
        gradient_sum += chunk_gradient

    mean_gradient = gradient_sum / total
    mean_norm_squared = float(np.dot(mean_gradient, mean_gradient))
    # Rounding can leave a tiny negative value when all g_i are equal.
    trace = max((squared_norm_sum - total * mean_norm_squared) / (total - 1), 0.0)
    gradient_norm_squared = mean_norm_squared - trace / total
    b_simple = trace / gradient_norm_squared if gradient_norm_squared > 0 else np.inf
    return NoiseScale(
        b_simple=float(b_simple),
        trace_covariance=float(trace),
        gradient_norm_squared=float(gradient_norm_squared),
        mean_gradient_norm_squared=mean_norm_squared,
        n_samples=int(n),
        total_weight=total,
    )
