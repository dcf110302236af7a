"""The training seam: how tools train and inspect a BatchMLP estimator.

:class:`TrainingContext` is the one way into an estimator's training for the
tools built on it (:mod:`skbatchnet.dask`, :mod:`skbatchnet.diagnostics`) and
for the estimator's own ``fit`` and ``partial_fit``: one path, not two. A
tool opens it with ``estimator.training_context()`` and then

1. encodes the objective's data: :meth:`TrainingContext.objective` (and,
   for targets held elsewhere, :meth:`TrainingContext.target_encoding`);
2. starts a run: :meth:`TrainingContext.start` (the random stream, and the
   initial weights on a first pass);
3. trains, either with the estimator's own solver
   (:meth:`TrainingContext.train`, on any data that answers as
   :class:`~skbatchnet._training.TrainingData` does) or with its own loop on
   :meth:`TrainingContext.training_network`, :attr:`TrainingContext.step`,
   :attr:`TrainingContext.stopping`, :attr:`TrainingContext.progress` and
   :attr:`TrainingContext.rng`;
4. publishes the result as fitted attributes: :meth:`TrainingContext.publish`.

The estimator's training state (random stream, optimizer, progress record,
weight average) stays on the estimator, so ``partial_fit`` continues it and
a failed fit rolls it back; this module is the only one outside the
estimator that reads it.
"""

from dataclasses import dataclass

import numpy as np
from sklearn.base import is_classifier
from sklearn.utils import check_random_state

from ._lbfgs import train_lbfgs
from ._optimizers import SOLVERS
from ._parameters import check_combinations
from ._private import (
    batch_generator,
    check_private_data,
    is_private,
    noise_multiplier,
)
from ._scheduling import BatchSizes, Epochs
from ._training import TrainingData, epoch_runner, split_validation
from .schedules import learning_rate_factor

# Epochs whose noise-scale terms an adaptive batch size smooths over.
NOISE_WINDOW = 3


@dataclass
class ObjectiveData:
    """The arrays of the objective, as training sees them.

    Attributes
    ----------
    X : ndarray or CSR matrix of shape (n_samples, n_features)
    Y : ndarray of shape (n_samples, n_outputs)
        The encoded targets (one-hot for classes).
    y : ndarray
        The targets as given, validated.
    sample_weight : ndarray of shape (n_samples,) or None
        The weights ``s_i`` of the objective, class weights multiplied in.
    user_weight : ndarray of shape (n_samples,) or None
        The caller's ``sample_weight``, validated.
    """

    X: object
    Y: np.ndarray
    y: np.ndarray
    sample_weight: np.ndarray | None
    user_weight: np.ndarray | None

    @property
    def total(self):
        """``S``, the total sample weight (the number of rows without weights)."""
        if self.sample_weight is None:
            return self.X.shape[0]
        return float(np.sum(self.sample_weight, dtype=np.float64))

    def training_data(self, validation=None):
        """The :class:`~skbatchnet._training.TrainingData` of these arrays."""
        return TrainingData(self.X, self.Y, self.sample_weight, self.total, validation)


class TrainingContext:
    """An estimator's training, opened for a tool; see the module docstring.

    Parameters
    ----------
    estimator : BaseBatchMLP
        The estimator trained; its parameters are already validated.

    Attributes
    ----------
    estimator : BaseBatchMLP
    network : Network or None
        The network of the run under way, from :meth:`train` or
        :meth:`training_network`; ``coefs_`` and ``intercepts_`` view its
        parameters.
    data : TrainingData-like or None
        What :meth:`train` trains on (without the held-out part's rows).
    batcher : Minibatcher, PoissonBatcher or None
        The batches of :meth:`train`'s stochastic run (of its latest batch
        size, under a batch-size schedule).
    """

    def __init__(self, estimator):
        check_combinations(estimator.get_params(deep=False))
        self.estimator = estimator
        self.network = self.data = self.batcher = None

    # -- reading the estimator ------------------------------------------------

    def objective(
        self, X, y, sample_weight=None, *, mode="apply", classes=None, dtype=None
    ):
        """Validate and encode ``X, y, sample_weight`` as training sees them.

        Parameters
        ----------
        X, y, sample_weight
            As the estimator's ``fit`` takes them.
        mode : str, default='apply'
            One of :data:`skbatchnet._targets.ENCODING_MODES`: ``'fit'`` and
            ``'partial_fit'`` learn the encoding and record
            ``n_features_in_`` and ``classes_``; the others apply the fitted
            encoding and check ``y`` against it.
        classes : array-like or None
            All the labels, for ``mode='partial_fit'`` of a classifier.
        dtype : numpy dtype or None
            The floating dtype of ``X`` and ``Y``; by default float64, or
            float32 as ``X`` comes.

        Returns
        -------
        ObjectiveData
        """
        return self.estimator._objective_data(
            X, y, sample_weight, mode=mode, classes=classes, dtype=dtype
        )

    def target_encoding(self):
        """The fitted :class:`~skbatchnet._targets.TargetEncoding` (picklable)."""
        return self.estimator._target_encoding()

    def fitted_network(self, dtype=None):
        """A copy of the fitted network (``coefs_``...), in ``dtype`` if given."""
        return self.estimator._network(dtype)

    @property
    def step(self):
        """What a step needs: the :class:`~skbatchnet._training.Step` (of
        epoch batches, without noise)."""
        return self.estimator._step()

    @property
    def stopping(self):
        """What stopping needs: the :class:`~skbatchnet._training.Stopping`."""
        return self.estimator._stopping()

    @property
    def progress(self):
        """The run's :class:`~skbatchnet._progress.Progress` record."""
        return self.estimator._progress

    @property
    def rng(self):
        """The estimator's random stream (a ``RandomState``), after :meth:`start`."""
        return self.estimator._rng

    def stalled(self):
        """Whether the stopping rule's patience (``n_iter_no_change``) ran out."""
        return self.progress._no_improvement_count > self.stopping.n_iter_no_change

    # -- training -------------------------------------------------------------

    def start(self, *, layer_units=None, dtype=None, incremental=False):
        """Start a run: the random stream, and a new network if asked.

        ``fit`` starts the random stream afresh, as scikit-learn does;
        ``incremental=True`` (``partial_fit``) continues it, so calls do not
        replay one shuffle. With ``layer_units`` (units per layer, input
        first) the weights are drawn in ``dtype`` and the training record
        starts anew; without, training continues from the fitted weights.
        """
        est = self.estimator
        if not incremental or not hasattr(est, "_rng"):
            est._rng = check_random_state(est.random_state)
        if layer_units is not None:
            est._initialize(layer_units, dtype)
        elif est.early_stopping != (self.progress.validation_scores is not None):
            # A warm start that switches early stopping on or off starts the
            # bookkeeping of the new criterion afresh.
            self.progress.reset_stopping(est.early_stopping)

    def training_network(self):
        """The network to train: ``coefs_`` and ``intercepts_`` view its parameters.

        With weight averaging the fitted attributes held the average; training
        continues from the raw weights.
        """
        self.network = self.estimator._training_network()
        return self.network

    def train(self, data, *, incremental=False, report=None):
        """Train with the estimator's solver and settings, then :meth:`publish`.

        Parameters
        ----------
        data : ObjectiveData or TrainingData-like
            The objective's data. From :class:`ObjectiveData` the held-out set
            of ``early_stopping=True`` is drawn here; other data (such as
            rows held on a cluster) is trained on as it is; under DP noise it
            also answers ``max_weight``, ``row_weight`` and ``with_total``.
        incremental : bool, default=False
            One epoch that continues the optimizer (``partial_fit``) instead
            of up to ``max_iter`` epochs with a new one.
        report : callable or None
            ``report(loss)`` after each epoch (L-BFGS iteration), once the
            fitted attributes show it; returns True to stop.
        """
        est = self.estimator
        report = report or (lambda loss: False)
        # Epochs (iterations) recorded before this call: training the privacy
        # ledger must know of, if it did not account for it.
        epochs_before = len(self.progress.n_steps_per_epoch)
        if est.solver == "lbfgs":
            if isinstance(data, ObjectiveData):
                data = data.training_data()
            net, self.data = self.training_network(), data
            loss = train_lbfgs(
                net,
                data,
                SOLVERS["lbfgs"].from_params(est.get_params(deep=False)),
                self.progress,
                alpha=est.alpha,
                verbose=est.verbose,
                report=report,
            )
            iterations = len(self.progress.n_steps_per_epoch) - epochs_before
            est._record_privacy(0.0, 1.0, iterations, trained_before=epochs_before)
            self.publish(loss=loss)
            return
        net = self.training_network()
        if not incremental or not hasattr(est, "_optimizer"):
            est._optimizer = SOLVERS[est.solver].from_params(
                est.get_params(deep=False), net.parameters
            )
        if isinstance(data, ObjectiveData):
            data = self._split(data)
        params = est.get_params(deep=False)
        private = is_private(params)
        if private:
            check_private_data(
                params, data.n_samples, data.max_weight, incremental=incremental
            )
            # Under noise n is public (as in Opacus) and stands for S, a sum
            # of the weights, in the step's divisor and the penalty's share.
            data = data.with_total(float(data.n_samples))
        generator = None
        if est.batch_sampling == "poisson":
            generator = batch_generator(params, self.rng)
        if not incremental:
            self.progress.n_iter = 0
        # Before any step: a schedule refused now costs no training.
        sizes = BatchSizes(
            est.batch_size,
            data.n_samples,
            first_epoch=self.progress.n_iter,
            n_epochs=1 if incremental else est.max_iter,
            held_out=data.validation is not None,
            history=self._history(0 if incremental else epochs_before),
        )
        sigma = noise_multiplier(params, data.n_samples) if private else 0.0
        self.data = data
        est._optimizer.check_schedule(self.progress.t + data.n_samples)
        epochs = self._epochs(
            data, sizes, generator=generator, sigma=sigma, private=private
        )
        averager = est._train_epochs(
            net, data, epochs, private=private, incremental=incremental, report=report
        )
        if data.validation is not None and self.progress._best_parameters is not None:
            net.parameters[...] = self.progress._best_parameters
        est._publish_average(net, averager)
        # The size of the last epoch run (of the first planned, if none ran).
        trained = self.progress.batch_size_curve[epochs_before:]
        est.batch_size_ = trained[-1] if trained else sizes[0]
        self._record_privacy(sigma, data.n_samples, epochs_before, sizes[0])
        self.publish()

    def _history(self, since):
        """The last epoch recorded from epoch ``since`` on, as an adaptive
        batch size reads it: ``(batch_size, noise_scale)``, or None. The
        noise scale is smoothed over the last ``NOISE_WINDOW`` epochs
        recorded, numerator and denominator apart: the sums of their
        ``tr(Sigma)`` and of their ``|G|^2`` estimates, divided."""
        progress = self.progress

        def last():
            if progress.noise_scale_curve is None:
                return None
            if len(progress.batch_size_curve) <= since:
                return None
            recorded = len(progress.batch_size_curve)
            window = slice(max(since, recorded - NOISE_WINDOW), None)
            g2 = np.asarray(progress.squared_gradient_curve[window], dtype=float)
            trace = np.asarray(progress.gradient_variance_curve[window], dtype=float)
            known = np.isfinite(g2) & np.isfinite(trace)
            scale = np.nan
            if known.any():
                g2, trace = g2[known].sum(), trace[known].sum()
                scale = trace / g2 if g2 > 0 else np.inf
            return progress.batch_size_curve[-1], scale

        return last

    def _epochs(self, data, sizes, *, generator, sigma, private):
        """The :class:`~skbatchnet._scheduling.Epochs` of a stochastic call
        of :class:`~skbatchnet._scheduling.BatchSizes` ``sizes``: each batch
        size's batcher, step and runner, and the rate rule's factor relative
        to ``sizes.first``, the size of epoch 0."""
        est, net = self.estimator, self.network
        noise = generator if private else None

        def make(size):
            est.batch_size_ = size  # the size in force, while training too
            self.batcher = est._batcher(size, generator)
            step = est._step(size, sigma)
            runner = epoch_runner(
                net, data, self.batcher, est._optimizer, step, noise=noise
            )
            return self.batcher, step, runner

        def rate_factor(size):
            return learning_rate_factor(
                est.learning_rate_scaling,
                size,
                sizes.first,
                solver=est.solver,
                gradient_reduction=est.gradient_reduction,
            )

        orders = None
        if est.batch_sampling != "poisson":
            # One chain of orders whatever the size.
            orders = est._batcher(sizes.order_size, generator)
            orders = orders.iter_orders(data.n_samples)
        return Epochs(sizes, make, rate_factor, orders=orders, n_samples=data.n_samples)

    def _record_privacy(self, sigma, n_samples, epochs_before, planned):
        """Account for this call's steps, one run per sampling rate ``q = b / n``."""
        progress = self.progress
        runs = zip(
            progress.batch_size_curve[epochs_before:],
            progress.n_steps_per_epoch[epochs_before:],
        )
        runs = list(runs) or [(planned, 0)]  # no epoch: the ledger still starts
        for size, steps in runs:
            self.estimator._record_privacy(
                sigma, size / n_samples, steps, trained_before=epochs_before
            )

    def _split(self, objective):
        """The training data, with the held-out set of ``early_stopping``."""
        est = self.estimator
        if not est.early_stopping:
            return objective.training_data()
        y = objective.y
        stratify = y if is_classifier(est) and np.ndim(y) == 1 else None
        (X, Y, _, sample_weight), validation = split_validation(
            objective.X,
            objective.Y,
            y,
            objective.sample_weight,
            fraction=est.validation_fraction,
            rng=self.rng,
            stratify_by=stratify,
        )
        total = (
            X.shape[0]
            if sample_weight is None
            else float(np.sum(sample_weight, dtype=np.float64))
        )
        return TrainingData(X, Y, sample_weight, total, validation)

    def publish(self, *, loss=None):
        """Write the run's result as the estimator's fitted attributes.

        ``loss`` becomes ``loss_`` if given, and the progress record becomes
        ``n_iter_``, ``loss_curve_``... (:meth:`train` has published the
        weights already: ``coefs_`` and ``intercepts_`` view the network, or
        hold the weight average). Raises the divergence ValueError if the
        weights are not finite.
        """
        est = self.estimator
        if loss is not None:
            est.loss_ = loss
        est._publish_progress()
        est._check_finite_weights()
