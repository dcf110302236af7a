"""Estimator plumbing shared by the classifier and the regressor.

The ladder is ``fit``/``partial_fit`` -> ``_fit`` (roll back on failure) ->
``_fit_unsafe`` (check, encode, start) -> :meth:`TrainingContext.train
<skbatchnet._context.TrainingContext.train>`, which hands arrays to
:mod:`skbatchnet._training`. The tools built on the estimators train through
the same :class:`~skbatchnet._context.TrainingContext`
(:meth:`BaseBatchMLP.training_context`). The arithmetic lives in
:mod:`skbatchnet.backprop`; this module only moves arrays, parameters and
fitted attributes.
"""

from abc import ABCMeta, abstractmethod

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, _fit_context, is_classifier
from sklearn.pipeline import Pipeline
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted, validate_data

from ._callbacks import (
    CALLBACK_STATE,
    CallbackSupportMixin,
    TaskReporter,
    with_callbacks,
)
from ._context import ObjectiveData, TrainingContext
from ._growth import LossGrowth
from ._losses import LOSSES
from ._optimizers import STOCHASTIC_SOLVERS
from ._outcome import divergence_error
from ._parameters import Parameters
from ._private import is_private, record_steps, warn_if_classes_inferred
from ._progress import Progress
from ._rollback import one_fit_at_a_time, restore, snapshot
from ._scheduling import is_adaptive
from ._targets import LEARNING_MODES, TargetEncoding, check_encoding_mode
from ._training import (
    Step,
    Stopping,
    train_epochs,
    weight_average,
)
from ._validation import (
    check_hidden_layer_sizes,
    check_network_size,
    check_sample_weight,
    check_sparse_structure,
    merge_class_weight,
)
from .backprop import Network
from .batching import Minibatcher, PoissonBatcher


def _beyond_range(X, dtype):
    """Whether X holds values too large for ``dtype``."""
    values = X.data if sp.issparse(X) else X
    return values.size > 0 and np.abs(values).max() > np.finfo(dtype).max


def final_estimator(estimator, X=None):
    """The last step of a (nested) Pipeline, and ``X`` as it reaches that step.

    ``X``, if given, is transformed by the fitted steps before the last one.
    Any other estimator is returned as it is, with ``X``.
    """
    while isinstance(estimator, Pipeline):
        if X is not None and len(estimator.steps) > 1:
            check_is_fitted(estimator)
            X = estimator[:-1].transform(X)
        estimator = estimator[-1]
    return estimator, X


class BaseBatchMLP(CallbackSupportMixin, Parameters, BaseEstimator, metaclass=ABCMeta):
    """Base class for the minibatch MLP estimators; use the subclasses."""

    # -- hooks the subclasses fill in ------------------------------------

    @abstractmethod
    def _encode_targets(self, X, y, *, mode, classes=None, dtype=None):
        """Validate ``X, y``; return ``X``, the 2-D float targets, the raw ``y``.

        ``mode`` is one of :data:`skbatchnet._targets.ENCODING_MODES`; the
        modes that learn the encoding also record ``n_features_in_`` and, for
        classifiers, the classes (from ``classes`` in ``'partial_fit'``).
        ``dtype`` forces the floating dtype (by default float64 or float32,
        as ``X`` comes).
        """

    @abstractmethod
    def _network_loss(self):
        """Name of the output loss in :data:`skbatchnet._losses.LOSSES`."""

    @abstractmethod
    def _score_output(self, output, y, sample_weight):
        """Validation score of network outputs ``output`` against raw ``y``."""

    @abstractmethod
    def _predictions(self, output):
        """What ``predict`` returns for the network outputs ``output``."""

    def _class_sample_weight(self, y, incremental):
        return None

    def _target_encoding(self):
        """The fitted encoding of the targets; real targets are only made 2-D."""
        return TargetEncoding()

    def predict(self, X):
        """Predict with the fitted network.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            Class labels for the classifier (a label indicator matrix for
            multilabel targets), predicted targets for the regressor.
        """
        out = self._predictions(self._forward(X))
        return out if is_classifier(self) else self._in_model_dtype(out)

    # -- the network ---------------------------------------------------------

    def _network(self, dtype=None):
        """A :class:`Network` of the fitted parameters, in ``dtype`` if given."""
        cast = (lambda a: a) if dtype is None else (lambda a: a.astype(dtype))
        return Network(
            [cast(W) for W in self.coefs_],
            [cast(b) for b in self.intercepts_],
            activation=self.activation,
            loss=self._network_loss(),
        )

    def _training_network(self):
        """A network whose parameters ``coefs_`` and ``intercepts_`` now view.

        Training updates the network's one parameter vector in place; the
        fitted attributes are rebound to views of it, so they follow.
        """
        net = self._network()
        if hasattr(self, "_raw_parameters"):
            # With weight averaging the fitted attributes hold the average;
            # training continues from the raw weights.
            net.parameters[...] = self._raw_parameters
        self.coefs_, self.intercepts_ = net.coefs, net.intercepts
        return net

    def _in_model_dtype(self, A):
        """``A`` in the parameters' dtype, clipped to its range."""
        dtype = self.coefs_[0].dtype
        if A.dtype == dtype:
            return A
        big = np.finfo(dtype).max
        return np.clip(A, -big, big).astype(dtype)

    def _forward(self, X, logits=False):
        """Network outputs for new data (the logits with ``logits=True``).

        Finite for any finite input: logits that overflow the float range are
        clipped to it (a NaN from inf - inf becomes 0). A float32 model
        computes in float64 when X holds values float32 cannot represent, and
        returns float64 then, so that its answers agree with a float64
        model's; the callers cast final results back to the model's dtype.
        """
        check_is_fitted(self)
        check_sparse_structure(X)  # before validate_data converts it
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            X = validate_data(
                self,
                X,
                accept_sparse=["csr", "csc"],
                dtype=(np.float64, np.float32),
                reset=False,
            )
            dtype = self.coefs_[0].dtype
            net = self._network()
            if X.dtype != dtype and _beyond_range(X, dtype):
                net = self._network(dtype=X.dtype)
            Z = net.decision_function(X.astype(net.dtype, copy=False))
            if not np.isfinite(Z).all():
                big = np.finfo(net.dtype).max
                np.nan_to_num(Z, copy=False, nan=0.0, posinf=big, neginf=-big)
            return Z if logits else net.output_from_logits(Z)

    # -- the training seam ---------------------------------------------------

    def training_context(self):
        """Open this estimator's training to a tool, after checking its parameters.

        The seam through which the tools built on the estimators (Dask
        training, the diagnostics) encode data, start, run and publish
        training, and read the fitted network, instead of reaching into the
        estimator; ``fit`` and ``partial_fit`` train through it too. Most
        users never call it.

        Returns
        -------
        context : skbatchnet._context.TrainingContext
            See its module, :mod:`skbatchnet._context`, for the contract.
        """
        self._validate_params()
        return TrainingContext(self)

    # -- fitting ---------------------------------------------------------------

    @one_fit_at_a_time
    @with_callbacks
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the model to data ``X`` and targets ``y``: minimize ``E`` on them.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Class labels (or a label indicator matrix for multilabel targets)
            for the classifier, real targets for the regressor.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights ``s_i`` of the objective.

        Returns
        -------
        self : object
            The fitted estimator.

        Notes
        -----
        A failure leaves the estimator as it was before the call. A
        KeyboardInterrupt, during training or from a callback, is not a
        failure: training ends at the last completed epoch (L-BFGS
        iteration), which is kept, with a warning.

        One estimator is fitted by one call at a time: ``fit`` or
        ``partial_fit`` called while another runs on the same estimator (from
        another thread) raises a RuntimeError and changes nothing. To fit in
        threads, give each its own ``sklearn.base.clone``; ``predict`` may run
        anywhere.
        """
        return self._fit(X, y, sample_weight)

    @available_if(lambda est: est._check_solver())
    @one_fit_at_a_time
    @with_callbacks
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One pass of minibatch steps over the data given.

        The optimizer state and the random stream continue from the previous
        call. The data given is the training set ``S`` of this call's
        objective.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            As in :meth:`fit`.
        sample_weight : array-like of shape (n_samples,), default=None
        classes : array-like of shape (n_classes,), default=None
            The classifier's labels, all of them; required on its first call.
            The regressor ignores it, so that tools written for classifiers
            (such as ``learning_curve(..., exploit_incremental_learning=True)``)
            work with both.

        Returns
        -------
        self : object
            The updated estimator.

        Notes
        -----
        As with :meth:`fit`, a failure leaves the estimator as it was, and a
        call while another ``fit`` or ``partial_fit`` runs on the same
        estimator raises a RuntimeError.
        """
        return self._fit(X, y, sample_weight, incremental=True, classes=classes)

    def _fit(self, X, y, sample_weight=None, *, incremental=False, classes=None):
        # Every failure, from bad input to a diverged loss or an interrupted
        # L-BFGS run, restores the estimator exactly as it was; the callback
        # machinery's state belongs to the call under way and is kept.
        backup = snapshot(self, keep_by_reference=self._callback_state())
        try:
            # Overflow on extreme inputs is reported by the divergence checks,
            # with remedies, rather than as numpy RuntimeWarnings.
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                self._fit_unsafe(X, y, sample_weight, incremental, classes)
        except BaseException:
            restore(self, backup, keep=self._callback_state())
            raise
        return self

    def _callback_state(self):
        return [k for k in vars(self) if k.startswith(CALLBACK_STATE)]

    def _objective_data(
        self, X, y, sample_weight=None, *, mode="apply", classes=None, dtype=None
    ):
        """The arrays of the objective (an :class:`ObjectiveData`).

        ``X`` and ``y`` validated and encoded as training sees them, in the
        encoding ``mode`` (see :data:`skbatchnet._targets.ENCODING_MODES`),
        and the sample weights with any class weights multiplied in.
        """
        check_encoding_mode(mode)
        X, Y, y = self._encode_targets(X, y, mode=mode, classes=classes, dtype=dtype)
        if mode not in LEARNING_MODES and Y.shape[1] != self.n_outputs_:
            raise ValueError(
                f"y has {Y.shape[1]} outputs, but {type(self).__name__} was fitted "
                f"with {self.n_outputs_}."
            )
        user_weight = check_sample_weight(sample_weight, X)
        incremental = mode in ("partial_fit", "continue")
        class_weight = self._class_sample_weight(y, incremental)
        sample_weight = merge_class_weight(user_weight, class_weight, X)
        if sp.issparse(X):
            X = X.tocsr()  # rows are sliced at every step
        return ObjectiveData(X, Y, y, sample_weight, user_weight)

    def _fit_unsafe(self, X, y, sample_weight, incremental, classes):
        hidden = check_hidden_layer_sizes(self.hidden_layer_sizes)
        if incremental and self.early_stopping:
            raise ValueError(
                "partial_fit does not support early_stopping=True: the held-out "
                "set would change with every call. Use fit, or set "
                "early_stopping=False."
            )
        first_pass = not hasattr(self, "coefs_") or (
            not self.warm_start and not incremental
        )
        fitted = [W.shape[1] for W in getattr(self, "coefs_", [])[:-1]]
        if not first_pass and fitted != hidden:
            raise ValueError(
                f"hidden_layer_sizes={self.hidden_layer_sizes!r} does not match the "
                f"hidden layers {tuple(fitted)} of the network that "
                f"{'partial_fit' if incremental else 'warm_start=True'} continues. "
                "Set warm_start=False (or start a new estimator) to fit a network "
                f"of the new shape, or set hidden_layer_sizes back to {tuple(fitted)}."
            )
        if first_pass:
            mode = "partial_fit" if incremental else "fit"
        else:
            mode = "continue" if incremental else "refit"
        context = TrainingContext(self)  # the parameters are validated
        data = context.objective(X, y, sample_weight, mode=mode, classes=classes)
        if mode in ("fit", "refit") and is_classifier(self):
            warn_if_classes_inferred(self.get_params(deep=False))
        X, y, n_outputs = data.X, data.y, data.Y.shape[1]
        units = [X.shape[1], *hidden, n_outputs] if first_pass else None
        context.start(layer_units=units, dtype=X.dtype, incremental=incremental)
        tasks = 1 if incremental else self.max_iter
        # Callbacks score with the caller's weights, not the class weights.
        user_weight = data.user_weight
        metadata = None if user_weight is None else {"sample_weight": user_weight}
        callbacks = self._init_callback_context(max_subtasks=tasks)
        callbacks.call_on_fit_task_begin(estimator=self, X=X, y=y, metadata=metadata)
        report = TaskReporter(self, callbacks, X, y, metadata)
        unit = "iteration" if self.solver == "lbfgs" else "epoch"
        context.train(
            data,
            incremental=incremental,
            report=lambda loss: report.task(unit, loss),
        )
        callbacks.call_on_fit_task_end(
            estimator=self, X=X, y=y, metadata=metadata, reconstruction_attributes={}
        )

    def _initialize(self, layer_units, dtype):
        check_network_size(layer_units, dtype, self.hidden_layer_sizes)
        self.n_outputs_ = layer_units[-1]
        self.n_layers_ = len(layer_units)
        self.out_activation_ = LOSSES[self._network_loss()].out_activation
        for attr in (
            "_optimizer",
            "_weight_average",
            "_raw_parameters",
            "noise_multiplier_",
            "privacy_ledger_",
            "_privacy_delta",
        ):
            self.__dict__.pop(attr, None)
        self._progress = Progress()
        self._progress.reset_stopping(self.early_stopping)
        self._publish_progress()
        net = Network.initialize(
            layer_units,
            activation=self.activation,
            loss=self._network_loss(),
            random_state=self._rng,
            dtype=dtype,
        )
        self.coefs_, self.intercepts_ = net.coefs, net.intercepts

    def _publish_progress(self):
        """Expose the training record as fitted attributes (``n_iter_``...)."""
        self.__dict__.pop("validation_loss_curve_", None)
        vars(self).update(self._progress.attributes())

    def _step(self, batch_size=None, noise_multiplier=0.0):
        """The Step; with ``batch_size`` (an int), of this estimator's batch
        sampling at that size."""
        expected_rows = None
        if batch_size is not None and self.batch_sampling == "poisson":
            expected_rows = float(batch_size)
        return Step(
            alpha=self.alpha,
            reduction=self.gradient_reduction,
            max_gradient_norm=self.max_gradient_norm,
            noise_multiplier=noise_multiplier,
            expected_rows=expected_rows,
            # Stochastic steps only: L-BFGS's step (no batch_size) never.
            track_noise=(self.track_noise_scale or is_adaptive(self.batch_size))
            and batch_size is not None,
        )

    def _stopping(self):
        if is_private(self.get_params(deep=False)):
            # No decision from the data outside the noisy steps: no tol rule,
            # and a growing loss only warns.
            return Stopping(
                tol=self.tol,
                n_iter_no_change=np.inf,
                verbose=self.verbose,
                growth=LossGrowth(stops=False),
            )
        return Stopping(
            tol=self.tol, n_iter_no_change=self.n_iter_no_change, verbose=self.verbose
        )

    def _record_privacy(self, sigma, sample_rate, steps, *, trained_before):
        """Account for this call's ``steps`` noisy steps: ``noise_multiplier_``,
        ``privacy_ledger_``, and the delta of ``epsilon_`` (``target_delta``
        as this call saw it).

        Training without noise on a private model (steps with ``sigma=0``,
        any solver), or before the first private call (``trained_before``
        epochs, which no ledger accounted for), makes epsilon infinite: the
        estimator cannot tell public pretraining from private data. A model
        never trained with noise gets none of these attributes.
        """
        ledger = getattr(self, "privacy_ledger_", None)
        if not sigma and ledger is None:
            return
        if ledger is None and trained_before:
            ledger = record_steps(None, 0.0, 1.0, trained_before)
        self.noise_multiplier_ = sigma
        self.privacy_ledger_ = record_steps(ledger, sigma, sample_rate, steps)
        self._privacy_delta = self.target_delta

    @property
    def epsilon_(self):
        """The epsilon ``privacy_ledger_`` spends at the fit's ``target_delta``
        (None without one), by dp-accounting's RDP accountant; computed when
        first read, since an accountant call costs tens of milliseconds."""
        if "privacy_ledger_" not in vars(self):
            raise AttributeError(
                f"{type(self).__name__} has no epsilon_: it was not trained with "
                "DP noise (noise_multiplier > 0 or target_epsilon)."
            )
        delta = vars(self).get("_privacy_delta")
        return None if delta is None else self.privacy_ledger_.epsilon(delta)

    def _check_finite_weights(self):
        if not all(np.isfinite(w).all() for w in self.coefs_ + self.intercepts_):
            # The loss is checked before every step, so only the very last
            # step of training can get here.
            where = f"the weights became non-finite in epoch {self.n_iter_}"
            rate = getattr(getattr(self, "_optimizer", None), "learning_rate", None)
            raise divergence_error(
                where,
                stepped=True,
                learning_rate=rate,
                reduction=self.gradient_reduction,
            )

    def _batcher(self, batch_size, generator=None):
        """The batcher of this estimator's settings at ``batch_size`` (an
        int): Poisson batches drawn from ``generator``, or a Minibatcher on
        the random stream."""
        if self.batch_sampling == "poisson":
            return PoissonBatcher(batch_size, generator)
        return Minibatcher(
            batch_size,
            shuffle=self.shuffle,
            drop_last=self.drop_last,
            random_state=self._rng,
        )

    def _train_epochs(self, net, data, epochs, *, private, incremental, report):
        """Run :func:`train_epochs` over ``epochs`` (an
        :class:`~skbatchnet._scheduling.Epochs`) with this estimator's
        settings and state; ``private``: under DP noise.

        ``report(loss)`` sees each epoch after the fitted attributes are
        updated. Returns the weight average in force at the end.
        """
        averager = weight_average(
            self.average, getattr(self, "_weight_average", None), net
        )
        self._set_or_drop("_weight_average", averager)

        def epoch_report(loss):
            self.loss_ = loss
            self._publish_progress()
            return report(loss)

        self._optimizer, averager = train_epochs(
            net,
            data,
            epochs,
            self._optimizer,
            self._progress,
            stopping=self._stopping(),
            averager=averager,
            rng=self._rng,
            score=self._score_output,
            report=epoch_report,
            # Under noise max_iter epochs are the plan, not a failure to converge.
            max_iter=None if incremental or private else self.max_iter,
        )
        self._set_or_drop("_weight_average", averager)
        self._publish_progress()
        return averager

    def _set_or_drop(self, name, value):
        if value is None:
            self.__dict__.pop(name, None)
        else:
            setattr(self, name, value)

    def _publish_average(self, net, averager):
        """Expose the averaged weights as ``coefs_``, keeping the raw ones."""
        if averager is None or averager.n_averaged == 0:
            self.__dict__.pop("_raw_parameters", None)
            return
        self._raw_parameters = net.parameters
        mean = self._network()
        mean.parameters[...] = averager.mean
        self.coefs_, self.intercepts_ = mean.coefs, mean.intercepts

    def _check_solver(self):
        if self.solver not in STOCHASTIC_SOLVERS:
            raise AttributeError(
                "partial_fit is only available for the stochastic solvers "
                f"{STOCHASTIC_SOLVERS}, not solver={self.solver!r}."
            )
        return True

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags
