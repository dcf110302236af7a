"""Data-parallel training on a Dask cluster: :class:`DataParallel`.

Requires Dask's distributed scheduler (``pip install "skbatchnet[dask]"``).
A step's gradient is a weighted sum over the batch's rows, so it splits
exactly across the workers that hold the rows: each reduces its share, and
the client adds the partial sums and takes the step (``strategy='gradient'``).
The alternative, ``strategy='average'``, trains a copy of the model on each
block of rows and averages the weights every few steps (local SGD).

Per-example clipping and DP-SGD keep the first strategy exact: each example
is clipped on its own, so clipped sums add up across blocks, and the client
adds the noise once to the sum, as the in-memory fit does.
"""

try:
    import dask.array as da
    import distributed
except ImportError as exc:  # pragma: no cover - exercised without dask
    raise ImportError(
        "skbatchnet.dask needs Dask's distributed scheduler: "
        'pip install "skbatchnet[dask]"'
    ) from exc

import numpy as np
from sklearn.base import BaseEstimator, MetaEstimatorMixin, clone, is_classifier
from sklearn.utils.validation import check_is_fitted

from ._dask_average import train_local_sgd
from ._dask_data import distribute
from ._private import is_private, warn_if_classes_inferred
from ._scheduling import is_adaptive
from ._validation import check_hidden_layer_sizes
from .schedules import BatchSizeSchedule

__all__ = ["DataParallel"]

# Settings the wrapper leaves out: the value it needs, and why.
UNSUPPORTED = {
    "early_stopping": (False, "the held-out split would be drawn on the cluster"),
    "warm_start": (False, "each fit starts from a fresh clone of the estimator"),
    "class_weight": (None, "pass the class weights in sample_weight"),
    "verbose": (False, "the progress is in loss_curve_"),
    "track_noise_scale": (
        False,
        "the blocks' per-example norms are not sent back; measure it in memory on a "
        "sample, or with skbatchnet.diagnostics.gradient_noise_scale",
    ),
}


class DataParallel(MetaEstimatorMixin, BaseEstimator):
    """Train a BatchMLP estimator on data spread over a Dask cluster.

    ``fit`` takes dask arrays (or dask DataFrames) chunked along the rows; the
    rows never reach the client. With ``strategy='gradient'`` every step's
    gradient is reduced across the workers, and the fitted weights are those
    of the wrapped estimator fitted in memory on the concatenated data, up to
    the order of floating-point summation. With ``strategy='average'`` each
    block of rows trains its own copy of the model for ``local_steps`` steps,
    and the copies' weights are averaged (local SGD).

    Parameters
    ----------
    estimator : BatchMLPClassifier or BatchMLPRegressor
        The model and its training settings. It is cloned; the fitted clone is
        ``estimator_``, an ordinary in-memory model.
    strategy : {'gradient', 'average'}, default='gradient'
        ``'gradient'``: synchronous gradient reduction, the in-memory
        trajectory. ``'average'``: weight averaging every ``local_steps``.
    local_steps : int or 'epoch', default=1
        With ``strategy='average'``, the steps each block's copy takes between
        two averagings; ``'epoch'`` is one pass over the block.
    client : distributed.Client or None, default=None
        The cluster to train on; None uses the current default client.

    Attributes
    ----------
    estimator_ : estimator
        The fitted clone of ``estimator``.
    n_features_in_ : int
        Number of features seen during fit.
    classes_ : ndarray
        The class labels (classifiers only).
    traffic_ : dict
        What the client sent and received during fit: ``steps`` (round
        trips; an empty Poisson batch makes none), ``bytes_sent`` and
        ``bytes_received`` (payloads, without Dask's own messages).

    Notes
    -----
    With ``strategy='gradient'``, per-example clipping
    (``max_gradient_norm``), ``gradient_reduction='unbiased'`` and DP-SGD
    (``batch_sampling='poisson'``, ``noise_multiplier`` or
    ``target_epsilon``) take the in-memory fit's steps: the workers return
    their blocks' clipped weighted sums, and the client adds them, then adds
    the noise once per step. The Poisson batches are drawn on the client,
    as row indices, from the one Generator the in-memory fit draws its
    batches and noise from (fresh entropy under noise): one stream, so that
    the fit is the in-memory fit for the same generator state
    (``unsafe_noise_seed``), and nothing to keep independent across workers,
    whose own streams would have to be seeded, and kept apart, from the
    client's. ``epsilon_``, ``privacy_ledger_`` and ``noise_multiplier_`` of
    ``estimator_`` are those of the in-memory fit.

    Not supported yet, and refused by ``fit`` with the setting's name:
    ``early_stopping=True``, ``warm_start=True``, ``class_weight``,
    ``verbose``, ``partial_fit``, multilabel targets, and sparse blocks. With
    ``strategy='average'`` also ``solver='lbfgs'``, the ``'invscaling'`` and
    ``'adaptive'`` learning rates, ``average``, batch-size schedules, and
    Poisson batches and DP noise (local steps on a block are not DP-SGD's
    steps).

    Examples
    --------
    >>> import dask.array as da
    >>> from distributed import Client, LocalCluster
    >>> from skbatchnet import BatchMLPRegressor
    >>> from skbatchnet.dask import DataParallel
    >>> cluster = LocalCluster(n_workers=2, processes=False, dashboard_address=None)
    >>> client = Client(cluster)
    >>> X = da.random.default_rng(0).normal(size=(400, 5), chunks=(100, 5))
    >>> y = X.sum(axis=1)
    >>> model = DataParallel(
    ...     BatchMLPRegressor(hidden_layer_sizes=(8,), batch_size=32, max_iter=5,
    ...                       random_state=0)
    ... ).fit(X, y)
    >>> model.estimator_.n_iter_
    5
    >>> model.predict(X[:3]).compute().shape
    (3,)
    >>> client.close(); cluster.close()
    """

    def __init__(self, estimator, *, strategy="gradient", local_steps=1, client=None):
        self.estimator = estimator
        self.strategy = strategy
        self.local_steps = local_steps
        self.client = client

    def fit(self, X, y, sample_weight=None):
        """Train a clone of the estimator on dask data, reduced on the cluster.

        Parameters
        ----------
        X : dask array or dask DataFrame of shape (n_samples, n_features)
            Chunked along the rows; column chunks are joined. A dask array's
            chunk sizes must be known.
        y : dask array or dask Series of shape (n_samples,) or \
                (n_samples, n_outputs)
        sample_weight : dask array or dask Series of shape (n_samples,), \
                default=None

        Returns
        -------
        self : DataParallel
            The fitted wrapper. On failure it is left as it was.
        """
        estimator = clone(self.estimator)
        context = self._check_settings(estimator)
        hidden = check_hidden_layer_sizes(estimator.hidden_layer_sizes)
        client = self.client or distributed.default_client()
        data = distribute(client, context, X, y, sample_weight)
        if is_classifier(estimator):  # as the in-memory fit warns
            warn_if_classes_inferred(estimator.get_params(deep=False))
        # The random draws of the in-memory fit, in its order: the stream
        # starts afresh, the initial weights come first, the shuffles next.
        units = [estimator.n_features_in_, *hidden, data.n_outputs]
        context.start(layer_units=units, dtype=data.dtype)
        net = context.fitted_network()
        data.spec = (net.layer_units, net.activation, net.loss)
        if self.strategy == "average":
            train_local_sgd(context, data, self.local_steps)
        else:
            # The in-memory fit's training stage, on data held by the cluster.
            context.train(data)
        self.estimator_ = estimator
        self.traffic_ = dict(data.traffic)
        self.n_features_in_ = estimator.n_features_in_
        if hasattr(estimator, "classes_"):
            self.classes_ = estimator.classes_
        return self

    def _check_settings(self, estimator):
        """The estimator's training context, once its settings are checked."""
        if self.strategy not in ("gradient", "average"):
            raise ValueError(
                f"strategy must be 'gradient' or 'average', got {self.strategy!r}."
            )
        context = estimator.training_context()
        for name, (allowed, why) in UNSUPPORTED.items():
            value = getattr(estimator, name, allowed)
            if value != allowed:
                raise ValueError(
                    f"DataParallel does not support {name}={value!r} yet ({why}); "
                    f"set {name}={allowed!r}."
                )
        if is_adaptive(estimator.batch_size):
            raise ValueError(
                f"DataParallel does not support batch_size={estimator.batch_size!r} "
                "yet: it follows the noise scale tracked from each step's "
                "per-example norms, which the blocks do not send back. Use a "
                "schedule from skbatchnet.schedules or a fixed batch_size."
            )
        if self.strategy == "average":
            _check_average_settings(estimator, self.local_steps)
        return context

    # -- prediction ------------------------------------------------------

    def _apply(self, method, X):
        check_is_fitted(self)
        fn = getattr(self.estimator_, method)
        columns = None
        if hasattr(X, "to_dask_array"):
            columns = list(X.columns)
            X = X.to_dask_array(lengths=True)
        if not isinstance(X, da.Array):
            return fn(X)
        if X.numblocks[1] > 1:
            X = X.rechunk({1: -1})
        probe = fn(_frame(np.zeros((1, X.shape[1]), X.dtype), columns))
        chunks = (X.chunks[0],) + tuple((n,) for n in probe.shape[1:])
        return X.map_blocks(
            _apply_block,
            fn,
            columns,
            dtype=probe.dtype,
            chunks=chunks,
            drop_axis=None if probe.ndim == 2 else 1,
            meta=probe[:0],
        )

    def predict(self, X):
        """Predictions; lazy (a dask array) for dask input.

        Parameters
        ----------
        X : dask array, dask DataFrame or array-like of shape (n_samples, n_features)

        Returns
        -------
        y : dask array or ndarray
        """
        return self._apply("predict", X)

    def predict_proba(self, X):
        """Class probabilities, as :meth:`predict` computes predictions.

        Parameters
        ----------
        X : dask array, dask DataFrame or array-like of shape (n_samples, n_features)
            The samples; blocks of rows stay on the workers.

        Returns
        -------
        proba : dask array or ndarray of shape (n_samples, n_classes)
            In the order of the wrapped classifier's ``classes_``.
        """
        return self._apply("predict_proba", X)

    def score(self, X, y, sample_weight=None):
        """Accuracy (classifiers) or R² (regressors), computed on the cluster.

        Parameters
        ----------
        X : dask array, dask DataFrame or array-like of shape (n_samples, n_features)
        y : dask array or array-like
        sample_weight : dask array or array-like, default=None

        Returns
        -------
        score : float
        """
        prediction = self._apply("predict", X)
        if not isinstance(prediction, da.Array):
            return self.estimator_.score(X, y, sample_weight=sample_weight)
        y = y.to_dask_array(lengths=True) if hasattr(y, "to_dask_array") else y
        y = da.asarray(y).rechunk(prediction.chunks)
        w = (
            da.ones(y.shape[0], chunks=y.chunks[0])
            if sample_weight is None
            else (da.asarray(sample_weight).rechunk(y.chunks[0]))
        )
        if is_classifier(self.estimator_):
            return float(((prediction == y) * w).sum() / w.sum())
        w2 = w if y.ndim == 1 else w[:, None]
        mean = (y * w2).sum(axis=0) / w.sum()
        residual = (((y - prediction) ** 2) * w2).sum(axis=0)
        spread = (((y - mean) ** 2) * w2).sum(axis=0)
        return float(da.mean(1 - residual / spread).compute())

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        inner = self.estimator.__sklearn_tags__()
        tags.estimator_type = inner.estimator_type
        tags.classifier_tags, tags.regressor_tags = (
            inner.classifier_tags,
            inner.regressor_tags,
        )
        return tags


def _frame(block, columns):
    if columns is None:
        return block
    import pandas as pd

    return pd.DataFrame(block, columns=columns)


def _apply_block(block, fn, columns):
    return fn(_frame(block, columns))


def _check_average_settings(estimator, local_steps):
    if not (
        local_steps == "epoch"
        or (
            isinstance(local_steps, int | np.integer)
            and not isinstance(local_steps, bool)
            and local_steps >= 1
        )
    ):
        raise ValueError(
            f"local_steps must be a positive integer or 'epoch', got {local_steps!r}."
        )
    if estimator.solver == "lbfgs":
        raise ValueError(
            "strategy='average' needs a stochastic solver, got solver='lbfgs'; "
            "use solver='sgd' or 'adam', or strategy='gradient'."
        )
    if estimator.solver == "sgd" and estimator.learning_rate != "constant":
        raise ValueError(
            "strategy='average' supports learning_rate='constant' only, got "
            f"learning_rate={estimator.learning_rate!r}: the schedule would have to "
            "follow the averaged model. Use strategy='gradient'."
        )
    if isinstance(estimator.batch_size, BatchSizeSchedule):
        raise ValueError(
            f"strategy='average' takes a fixed batch_size, not "
            f"batch_size={estimator.batch_size!r}: each block's copy takes its "
            "own local steps. Use strategy='gradient', which follows the "
            "schedule as the in-memory fit does."
        )
    if estimator.average is not False:
        raise ValueError(
            f"strategy='average' does not support average={estimator.average!r}; "
            "set average=False or use strategy='gradient'."
        )
    params = estimator.get_params(deep=False)
    if is_private(params) or estimator.batch_sampling == "poisson":
        noise = [n for n in ("noise_multiplier", "target_epsilon") if params[n]]
        what = "batch_sampling='poisson'"
        if noise:
            what = f"DP noise ({noise[0]}={params[noise[0]]!r})"
        raise ValueError(
            f"strategy='average' does not support {what}: each block's copy "
            "would take local steps on batches of its own block, which are not "
            "DP-SGD's Poisson batches drawn from the whole set, and under noise "
            "every copy would add its own noise to every local step instead of "
            "once to each step's sum, so neither the steps nor epsilon_ would "
            "be DP-SGD's. Use strategy='gradient', which takes the in-memory "
            "fit's steps."
        )
