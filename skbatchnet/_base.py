"""Estimator plumbing shared by the classifier and the regressor.

The ladder is ``fit``/``partial_fit`` -> ``_fit`` (validate, initialize,
roll back on failure) -> ``_fit_stochastic`` (epochs) -> ``_run_epoch``
(minibatch steps), or ``_fit_lbfgs``. The arithmetic lives in
:mod:`skbatchnet.backprop`; this module only moves arrays and counters.
"""

import copy
import math
import warnings
from abc import ABCMeta, abstractmethod
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
import scipy.optimize
import scipy.sparse as sp
from sklearn.base import BaseEstimator, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ._activations import ACTIVATIONS
from ._averaging import WeightAverage
from ._callbacks import CALLBACK_STATE, CallbackSupportMixin
from ._losses import LOSSES
from ._optimizers import OPTIMIZERS
from ._validation import check_hidden_layer_sizes, check_sample_weight
from .backprop import REDUCTIONS, Network
from .batching import Minibatcher, resolve_batch_size

_STOCHASTIC_SOLVERS = ("sgd", "adam")


def _rows(A, batch):
    """``A[batch]`` for a slice or an index array of rows.

    ``ndarray.take`` gathers rows faster than fancy indexing: a quarter of
    the time for one row, two thirds for 1024 rows of 64 floats.
    """
    if isinstance(batch, np.ndarray) and isinstance(A, np.ndarray):
        return A.take(batch, axis=0)
    return A[batch]


def _beyond_range(X, dtype):
    """Whether X holds values too large for ``dtype``."""
    values = X.data if sp.issparse(X) else X
    return values.size > 0 and np.abs(values).max() > np.finfo(dtype).max


def _is_callback_state(key):
    return key.startswith(CALLBACK_STATE)


@dataclass
class _TrainingData:
    """What one fit trains on: rows, targets, weights, S, the held-out part."""

    X: object
    Y: np.ndarray
    sample_weight: object
    total: float
    validation: object


class _TaskReporter:
    """Reports each epoch (L-BFGS iteration) to scikit-learn's callbacks.

    Returns True when a callback asks training to stop.
    """

    def __init__(self, estimator, context, X, y, metadata):
        self.estimator, self.context = estimator, context
        self.X, self.y, self.metadata = X, y, metadata

    def task(self, name, loss):
        est, kwargs = self.estimator, dict(X=self.X, y=self.y, metadata=self.metadata)
        task = self.context.subcontext(task_name=name)
        task.call_on_fit_task_begin(estimator=est, **kwargs)
        # Evaluated only if a callback asks for the fitted estimator; copies,
        # because training goes on updating the live weights in place.
        return task.call_on_fit_task_end(
            estimator=est,
            reconstruction_attributes=lambda: {
                "coefs_": [c.copy() for c in est.coefs_],
                "intercepts_": [b.copy() for b in est.intercepts_],
                "loss_": loss,
                "n_iter_": est.n_iter_,
            },
            **kwargs,
        )


class BaseBatchMLP(CallbackSupportMixin, BaseEstimator, metaclass=ABCMeta):
    """Base class for the minibatch MLP estimators; use the subclasses."""

    _parameter_constraints: dict = {
        "hidden_layer_sizes": [
            "array-like",
            Interval(Integral, 1, None, closed="left"),
        ],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "solver": [StrOptions({"lbfgs", "sgd", "adam"})],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [
            StrOptions({"auto", "full"}),
            Interval(Integral, 1, None, closed="left"),
        ],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "n_iter_no_change": [
            Interval(Integral, 1, None, closed="left"),
            Options(Real, {np.inf}),
        ],
        "max_fun": [Interval(Integral, 1, None, closed="left")],
        "gradient_reduction": [StrOptions(set(REDUCTIONS))],
        "drop_last": ["boolean", StrOptions({"merge"})],
        "average": ["boolean", Interval(Integral, 1, None, closed="left")],
    }

    @abstractmethod
    def __init__(
        self,
        hidden_layer_sizes,
        activation,
        *,
        solver,
        alpha,
        batch_size,
        learning_rate,
        learning_rate_init,
        power_t,
        max_iter,
        shuffle,
        random_state,
        tol,
        verbose,
        warm_start,
        momentum,
        nesterovs_momentum,
        early_stopping,
        validation_fraction,
        beta_1,
        beta_2,
        epsilon,
        n_iter_no_change,
        max_fun,
        gradient_reduction,
        drop_last,
        average,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.gradient_reduction = gradient_reduction
        self.drop_last = drop_last
        self.average = average

    # -- hooks the subclasses fill in ------------------------------------

    @abstractmethod
    def _encode_targets(self, X, y, first_pass, incremental, classes=None):
        """Validate ``X, y``; return ``X``, the 2-D float targets, the raw ``y``.

        On the first pass this also records ``n_features_in_`` and, for
        classifiers, the classes.
        """

    @abstractmethod
    def _network_loss(self):
        """Name of the output loss in :data:`skbatchnet._losses.LOSSES`."""

    @abstractmethod
    def _score_output(self, output, y, sample_weight):
        """Validation score of network outputs ``output`` against raw ``y``."""

    def _class_sample_weight(self, y, incremental):
        return None

    # -- the network ---------------------------------------------------------

    def _network(self):
        """A :class:`Network` view of the fitted parameters (no copy)."""
        return Network(
            self.coefs_,
            self.intercepts_,
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

    def _forward(self, X, logits=False):
        """Network outputs for new data (the logits with ``logits=True``).

        Finite for any finite input: logits that overflow the float range are
        clipped to it (a NaN from inf - inf becomes 0), and a float32 model
        computes in float64 when X holds values float32 cannot represent.
        """
        check_is_fitted(self)
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
                net = Network(
                    [c.astype(X.dtype) for c in self.coefs_],
                    [b.astype(X.dtype) for b in self.intercepts_],
                    activation=self.activation,
                    loss=self._network_loss(),
                )
            Z = net.decision_function(X.astype(net.dtype, copy=False))
            if net.dtype != dtype or not np.isfinite(Z).all():
                big = np.finfo(dtype).max  # the model's range, as Z is cast to it
                np.nan_to_num(Z, copy=False, nan=0.0, posinf=big, neginf=-big)
                np.clip(Z, -big, big, out=Z)
            out = Z if logits else net.output_from_logits(Z)
            return out.astype(dtype, copy=False)

    # -- fitting ---------------------------------------------------------------

    def _fit(self, X, y, sample_weight=None, *, incremental=False, classes=None):
        # Every failure, from bad input to a diverged loss or an interrupted
        # L-BFGS run, restores the estimator exactly as it was.
        backup, generators = self._snapshot()
        try:
            # Overflow on extreme inputs is reported by the divergence checks,
            # with remedies, rather than as numpy RuntimeWarnings.
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                self._fit_unsafe(X, y, sample_weight, incremental, classes)
        except BaseException:
            # The callback machinery's state is the current call's (its
            # teardown still has to run), so it is kept as it is now.
            callbacks = {k: v for k, v in vars(self).items() if _is_callback_state(k)}
            self.__dict__.clear()
            self.__dict__.update(backup)
            self.__dict__.update(callbacks)
            for generator, state in generators:
                generator.set_state(state)
            raise
        return self

    def _snapshot(self):
        """The fitted state, deep-copied, and the random generators' states.

        Parameters and the callback machinery are kept by reference. Random
        generators (``random_state`` when it is a RandomState instance, and
        the stream training draws from, often the same object) are kept by
        reference too and their states recorded, so a rollback rewinds the
        very objects the caller holds.
        """
        params = self.get_params(deep=False)
        state = vars(self)
        generators = {
            id(g): g
            for g in (self.random_state, state.get("_rng"))
            if isinstance(g, np.random.RandomState)
        }
        kept = {k for k in state if k in params or _is_callback_state(k)}
        kept.add("_rng")
        # One deepcopy call, so objects shared between attributes stay shared.
        fitted = copy.deepcopy({k: v for k, v in state.items() if k not in kept})
        backup = {k: state[k] if k in kept else fitted[k] for k in state}
        return backup, [(g, g.get_state()) for g in generators.values()]

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
        X, Y, y = self._encode_targets(X, y, first_pass, incremental, classes)
        if not first_pass and Y.shape[1] != self.n_outputs_:
            raise ValueError(
                f"y has {Y.shape[1]} outputs, but {type(self).__name__} was fitted "
                f"with {self.n_outputs_}."
            )
        sample_weight = user_weight = check_sample_weight(sample_weight, X)
        class_weight = self._class_sample_weight(y, incremental)
        if class_weight is not None:
            class_weight = class_weight.astype(X.dtype, copy=False)
            if sample_weight is not None:
                class_weight *= sample_weight
            sample_weight = check_sample_weight(class_weight, X)
        if sp.issparse(X):
            X = X.tocsr()  # rows are sliced at every step

        if not incremental or not hasattr(self, "_rng"):
            # fit starts the random stream afresh, as scikit-learn does;
            # partial_fit continues it, so calls do not replay one shuffle.
            self._rng = check_random_state(self.random_state)
        if first_pass:
            self._initialize(Y, [X.shape[1], *hidden, Y.shape[1]], X.dtype)
        elif self.early_stopping != (self.validation_scores_ is not None):
            # A warm start that switches early stopping on or off starts the
            # bookkeeping of the new criterion afresh.
            self._reset_stopping()
        tasks = 1 if incremental else self.max_iter
        # Callbacks score with the caller's weights, not the class weights.
        metadata = None if user_weight is None else {"sample_weight": user_weight}
        context = self._init_callback_context(max_subtasks=tasks)
        context.call_on_fit_task_begin(estimator=self, X=X, y=y, metadata=metadata)
        report = _TaskReporter(self, context, X, y, metadata)
        if self.solver == "lbfgs":
            self._fit_lbfgs(X, Y, sample_weight, report)
        else:
            self._fit_stochastic(X, Y, y, sample_weight, incremental, report)
        self._check_finite_weights()
        context.call_on_fit_task_end(
            estimator=self, X=X, y=y, metadata=metadata, reconstruction_attributes={}
        )

    def _initialize(self, Y, layer_units, dtype):
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = Y.shape[1]
        self.n_layers_ = len(layer_units)
        self.out_activation_ = LOSSES[self._network_loss()].out_activation
        self.loss_curve_ = []
        for attr in (
            "_optimizer",
            "_best_coefs",
            "_best_intercepts",
            "_weight_average",
            "_raw_parameters",
        ):
            self.__dict__.pop(attr, None)
        self._reset_stopping()
        net = Network.initialize(
            layer_units,
            activation=self.activation,
            loss=self._network_loss(),
            random_state=self._rng,
            dtype=dtype,
        )
        self.coefs_, self.intercepts_ = net.coefs, net.intercepts

    def _reset_stopping(self):
        self._no_improvement_count = 0
        if self.early_stopping:
            self.validation_scores_ = []
            self.validation_loss_curve_ = []
            self.best_validation_score_ = -np.inf
            self.best_loss_ = None
        else:
            self.best_loss_ = np.inf
            self.validation_scores_ = None
            self.best_validation_score_ = None
            self.__dict__.pop("validation_loss_curve_", None)

    def _check_finite_weights(self):
        if not all(np.isfinite(w).all() for w in self.coefs_ + self.intercepts_):
            # The loss is checked before every step, so only the very last
            # step of training can get here.
            where = f"the last step of epoch {self.n_iter_}"
            if self.solver == "lbfgs":
                where = f"L-BFGS iteration {self.n_iter_}"
            elif hasattr(self, "_optimizer"):
                where += f", at learning rate {self._optimizer.learning_rate:g}"
            raise ValueError(
                f"The weights became non-finite in {where}. Lower "
                "learning_rate_init, scale the inputs (for example with "
                "StandardScaler), or use gradient_reduction='mean' instead of "
                "'sum'."
            )

    # -- L-BFGS ------------------------------------------------------------------

    def _fit_lbfgs(self, X, Y, sample_weight, report):
        """Minimize the whole-set objective E with scipy's L-BFGS-B.

        ``batch_size`` and ``gradient_reduction`` do not apply: every
        evaluation is the exact ``E`` and ``grad E`` on all the data.
        """
        net = self._training_network()
        workspace = net.workspace(X.shape[0])
        total = X.shape[0] if sample_weight is None else float(sample_weight.sum())
        last = {}

        def fun(x):
            net.parameters[...] = x
            loss, _, _ = net.batch_gradient(
                X,
                Y,
                sample_weight,
                alpha=self.alpha,
                total_weight=total,
                workspace=workspace,
            )
            last["loss"] = loss
            return loss, workspace.gradient.astype(np.float64)

        def callback(xk):
            self.loss_curve_.append(last["loss"])
            if self.verbose:
                print(f"Iteration {len(self.loss_curve_)}, loss = {last['loss']:.8f}")
            # scipy >= 1.11 would honour StopIteration; a stop request from a
            # callback is not acted on here, to keep older scipy supported.
            report.task("iteration", last["loss"])

        with workspace.blas_threads():
            result = scipy.optimize.minimize(
                fun,
                net.parameters.astype(np.float64),
                method="L-BFGS-B",
                jac=True,
                callback=callback,
                options={
                    "maxfun": self.max_fun,
                    "maxiter": self.max_iter,
                    "gtol": self.tol,
                },
            )
        net.parameters[...] = result.x
        self.n_iter_ = min(int(result.nit), self.max_iter)
        self.loss_ = float(result.fun)
        self.best_loss_ = min(self.loss_curve_ + [self.loss_])
        if result.status != 0:
            warnings.warn(
                f"lbfgs failed to converge after {self.n_iter_} iterations "
                f"(status={result.status}): {result.message}. Increase max_iter "
                "or max_fun, or scale the data.",
                ConvergenceWarning,
                stacklevel=2,
            )

    # -- stochastic solvers ------------------------------------------------------

    def _make_optimizer(self, params):
        if self.solver == "sgd":
            return OPTIMIZERS["sgd"](
                params,
                self.learning_rate_init,
                self.learning_rate,
                self.momentum,
                self.nesterovs_momentum,
                self.power_t,
            )
        return OPTIMIZERS["adam"](
            params, self.learning_rate_init, self.beta_1, self.beta_2, self.epsilon
        )

    def _split_validation(self, X, Y, y, sample_weight):
        """Hold out ``validation_fraction`` of the data, stratified by class."""
        if self.validation_fraction == 0:
            raise ValueError(
                "early_stopping=True needs a held-out set, but validation_fraction "
                "is 0. Set validation_fraction to a value in (0, 1), e.g. 0.1."
            )
        stratify = None
        if is_classifier(self) and np.ndim(y) == 1:
            _, counts = np.unique(y, return_counts=True)
            n_val = int(np.ceil(self.validation_fraction * X.shape[0]))
            # Stratification needs two examples per class and room for every
            # class on both sides; without that the split is plain random.
            if counts.min() >= 2 and min(n_val, X.shape[0] - n_val) >= counts.size:
                stratify = y
        arrays = [X, Y, y] + ([] if sample_weight is None else [sample_weight])
        parts = train_test_split(
            *arrays,
            random_state=self._rng,
            test_size=self.validation_fraction,
            stratify=stratify,
        )
        train, val = parts[0::2], parts[1::2]
        if val[0].shape[0] < 2:
            raise ValueError(
                "The validation set is too small. Increase validation_fraction or "
                "the size of the data set, or set early_stopping=False."
            )
        if sample_weight is None:
            train, val = train + [None], val + [None]
        elif not (train[-1].sum() > 0 and val[-1].sum() > 0):
            side = "held-out" if train[-1].sum() > 0 else "training"
            raise ValueError(
                f"With early_stopping=True the {side} part of the data has zero "
                "total sample weight. Give more examples a positive weight, "
                "change validation_fraction or random_state, or set "
                "early_stopping=False."
            )
        return train, val

    def _fit_stochastic(self, X, Y, y, sample_weight, incremental, report):
        net = self._training_network()
        if not incremental or not hasattr(self, "_optimizer"):
            self._optimizer = self._make_optimizer([net.parameters])
        if self.early_stopping:
            (X, Y, _, sample_weight), validation = self._split_validation(
                X, Y, y, sample_weight
            )
        else:
            validation = None

        n_samples = X.shape[0]
        self.batch_size_ = resolve_batch_size(self.batch_size, n_samples)
        batcher = Minibatcher(
            self.batch_size,
            gradient_reduction=self.gradient_reduction,
            shuffle=self.shuffle,
            drop_last=self.drop_last,
            random_state=self._rng,
        )
        epochs = batcher.iter_epochs(n_samples)
        total = n_samples if sample_weight is None else float(sample_weight.sum())
        # One workspace serves every batch: a shorter one uses its first rows.
        rows = max(stop - start for start, stop in batcher.bounds(n_samples))
        workspace = net.workspace(rows)
        averager = self._averager(net)

        if not incremental:
            self.n_iter_ = 0
        data = _TrainingData(X, Y, sample_weight, total, validation)
        with workspace.blas_threads():
            averager = self._epochs(
                net, data, epochs, workspace, averager, incremental, report
            )
        if validation is not None and hasattr(self, "_best_coefs"):
            best = self._best_coefs + self._best_intercepts
            for current, value in zip(self.coefs_ + self.intercepts_, best):
                current[...] = value
        self._publish_average(net, averager)

    def _epochs(self, net, data, epochs, workspace, averager, incremental, report):
        """The epoch loop: steps, bookkeeping, stopping rules.

        Returns the weight average in force at the end (an interruption
        restores the one of the last completed epoch).
        """
        for _ in range(1 if incremental else self.max_iter):
            checkpoint = self._checkpoint(net, averager)
            try:
                loss, seen = self._run_epoch(
                    net, data, next(epochs), workspace, averager
                )
            except KeyboardInterrupt:
                # Back to the end of the last completed epoch, so the weights
                # agree with n_iter_ and loss_curve_.
                net, averager = self._restore(net, checkpoint)
                warnings.warn(
                    f"Training interrupted by user; the model is kept as it was "
                    f"after epoch {self.n_iter_}.",
                    stacklevel=2,
                )
                break
            self.n_iter_ += 1
            self.t_ += seen
            self.loss_ = loss
            self.loss_curve_.append(loss)
            if self.verbose:
                print(f"Iteration {self.n_iter_}, loss = {loss:.8f}")
            self._update_no_improvement_count(net, data.validation)
            self._optimizer.iteration_ends(self.t_)
            if report.task("epoch", loss):
                break

            if self._no_improvement_count > self.n_iter_no_change:
                what = "Validation score" if data.validation else "Training loss"
                msg = (
                    f"{what} did not improve more than tol={self.tol:f} for "
                    f"{self.n_iter_no_change} consecutive epochs."
                )
                if self._optimizer.trigger_stopping(msg, self.verbose):
                    break
                self._no_improvement_count = 0
            if not incremental and self.n_iter_ == self.max_iter:
                warnings.warn(
                    f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) "
                    "reached and the optimization hasn't converged yet.",
                    ConvergenceWarning,
                    stacklevel=2,
                )
        return averager

    def _averager(self, net):
        """The running weight average (created, kept or dropped per ``average``)."""
        if not self.average:
            self.__dict__.pop("_weight_average", None)
            self.__dict__.pop("_raw_parameters", None)
            return None
        averager = getattr(self, "_weight_average", None)
        if averager is None or averager.mean.shape != net.parameters.shape:
            start = 1 if self.average is True else int(self.average)
            averager = WeightAverage(net.parameters.size, net.dtype, start)
            self._weight_average = averager
        return averager

    def _publish_average(self, net, averager):
        """Expose the averaged weights as ``coefs_``, keeping the raw ones."""
        if averager is None or averager.n_averaged == 0:
            self.__dict__.pop("_raw_parameters", None)
            return
        self._raw_parameters = net.parameters
        mean = self._network()
        mean.parameters[...] = averager.mean
        self.coefs_, self.intercepts_ = mean.coefs, mean.intercepts

    def _checkpoint(self, net, averager):
        return (
            net.parameters.copy(),
            copy.deepcopy(self._optimizer),
            copy.deepcopy(averager),
            self._rng.get_state(),
        )

    def _restore(self, net, checkpoint):
        parameters, self._optimizer, averager, rng_state = checkpoint
        net.parameters[...] = parameters
        self._rng.set_state(rng_state)
        if averager is not None:
            self._weight_average = averager
        return net, averager

    def _run_epoch(self, net, data, batches, workspace, averager):
        """One pass of minibatch steps; returns the epoch loss and rows seen.

        The epoch loss weights each batch's estimate of E by the batch's share
        of the total weight seen, so it is comparable across batch sizes.
        """
        X, Y, sample_weight, total = data.X, data.Y, data.sample_weight, data.total
        loss_sum, weight_sum, seen = 0.0, 0.0, 0
        reduction = self.gradient_reduction
        optimizer = self._optimizer
        for number, batch in enumerate(batches, start=1):
            X_batch, Y_batch = _rows(X, batch), _rows(Y, batch)
            n = X_batch.shape[0]
            if sample_weight is None:
                w_batch, weight = None, float(n)
            else:
                w_batch = _rows(sample_weight, batch)
                weight = float(w_batch.sum())
                if weight == 0:
                    # A batch with no weight has no gradient to follow.
                    seen += n
                    continue
            loss, _, _ = net.batch_gradient(
                X_batch,
                Y_batch,
                w_batch,
                alpha=self.alpha,
                total_weight=total,
                reduction=reduction,
                scale=optimizer.gradient_scale,
                workspace=workspace,
            )
            if not math.isfinite(loss):
                raise self._divergence("loss", number)
            optimizer.step([net.parameters], [workspace.gradient])
            if averager is not None:
                averager.update(net.parameters, n)
            loss_sum += weight * loss
            weight_sum += weight
            seen += n
        # The loss check above sees each step's result only at the next step;
        # this catches an epoch's last step, once per epoch.
        if not np.isfinite(net.parameters).all():
            raise self._divergence("weights", number)
        if weight_sum == 0:
            # No batch carried weight (drop_last=True can drop every weighted
            # row): no step was taken and no batch estimates the objective, so
            # evaluate it exactly on the training data instead.
            return net.objective(X, Y, sample_weight, alpha=self.alpha), seen
        return loss_sum / weight_sum, seen

    def _divergence(self, what, batch):
        return ValueError(
            f"Training diverged: the {what} became non-finite in epoch "
            f"{self.n_iter_ + 1}, batch {batch}, at learning rate "
            f"{self._optimizer.learning_rate:g}. Lower learning_rate_init, scale "
            "the inputs (for example with StandardScaler), or use "
            "gradient_reduction='mean' instead of 'sum'."
        )

    def _update_no_improvement_count(self, net, validation):
        if validation is None:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]
            return
        X_val, Y_val, y_val, w_val = validation
        logits = net.decision_function(X_val)
        losses = net.per_example_loss_from_logits(Y_val, logits)
        val_loss = float(np.average(losses, weights=w_val))
        score = self._score_output(net.output_from_logits(logits), y_val, w_val)
        self.validation_loss_curve_.append(val_loss)
        self.validation_scores_.append(score)
        if self.verbose:
            print(f"Validation score: {score:f}")
        if score < self.best_validation_score_ + self.tol:
            self._no_improvement_count += 1
        else:
            self._no_improvement_count = 0
        if score > self.best_validation_score_:
            self.best_validation_score_ = score
            self._best_coefs = [c.copy() for c in self.coefs_]
            self._best_intercepts = [b.copy() for b in self.intercepts_]

    def _check_solver(self):
        if self.solver not in _STOCHASTIC_SOLVERS:
            raise AttributeError(
                "partial_fit is only available for the stochastic solvers "
                f"{_STOCHASTIC_SOLVERS}, not solver={self.solver!r}."
            )
        return True

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags
