"""Training: the epoch loop, its runners and its bookkeeping.

Functions of a network, its data, an optimizer and a
:class:`~skbatchnet._progress.Progress` record; none of them sees an
estimator. A step of stochastic training is

1. ``rows`` = the next batch;
2. ``c`` = the reduction coefficients of those rows' weights;
3. ``grad`` = the network's gradient on those rows with those coefficients
   and the penalty share ``alpha / S``;
4. the optimizer's update,

which :func:`run_epoch` spells out line by line, asking its data for steps
2 and 3 (:meth:`TrainingData.gradient`): data held elsewhere, such as on a
cluster (:mod:`skbatchnet.dask`), answers with the same numbers.

:func:`train_epochs` runs the epochs through a runner: :class:`NumpyEpochs`
(that specification) or :class:`~skbatchnet._compiled.CompiledEpochs` (the
compiled loop, which takes the same steps); :func:`epoch_runner` picks one.
"""

import math
from dataclasses import dataclass, replace

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

from ._averaging import WeightAverage
from ._compiled import CompiledEpochs
from ._growth import LossGrowth
from ._noise_scale import step_estimates
from ._optimizers import SGD
from ._outcome import Diverged, EpochSums, Penalty, divergence_error
from ._progress import update_stopping
from ._rollback import Checkpoint
from ._step import GaussianNoise, Step, penalty_step
from ._validation import stratification
from ._warn import warn
from .batching import resolve_batch_size

__all__ = [
    "Diverged",
    "NumpyEpochs",
    "Step",
    "Stopping",
    "TrainingData",
    "epoch_runner",
    "run_epoch",
    "train_epochs",
]


@dataclass
class TrainingData:
    """What one fit trains on: rows, targets, weights, ``S``, the held-out part.

    ``weight_per_row`` is the expected weight of a row drawn from the rows
    batches are drawn from, ``S / n`` unless set: a cluster's block trained
    on its own (``_dask_average``) draws from the block, of its own
    ``S_k / n_k``, while its penalty share stays ``alpha / S``.
    """

    X: object
    Y: np.ndarray
    sample_weight: object
    total: float
    validation: object = None
    weight_per_row: float | None = None

    @property
    def n_samples(self):
        return self.X.shape[0]

    def with_total(self, total):
        """The same rows, with ``S`` set to ``total`` (rows drawn at ``S / n``)."""
        return replace(self, total=total, weight_per_row=None)

    @property
    def row_weight(self):
        """The expected weight of a row drawn: ``weight_per_row``, or ``S / n``."""
        if self.weight_per_row is None:
            return self.total / self.n_samples
        return self.weight_per_row

    @property
    def max_weight(self):
        """The largest sample weight, None without weights."""
        if self.sample_weight is None:
            return None
        return float(np.max(self.sample_weight, initial=0))

    def gradient(self, network, rows, *, scale, step, workspace):
        """One batch's rows, weight, loss, reduced gradient times ``scale``,
        and how many of its rows' gradients were clipped.

        The loss and gradient are None for a batch that takes no step
        (:meth:`Step.takes_step`). Under ``step.track_noise`` the
        workspace's ``noise_estimates`` are the step's estimates of the
        noise scale's terms (:func:`~skbatchnet._noise_scale.step_estimates`),
        None when it has none.
        """
        workspace.noise_estimates = None
        X_batch, Y_batch = rows_of(self.X, rows), rows_of(self.Y, rows)
        n = X_batch.shape[0]
        if self.sample_weight is None:
            w_batch, weight = None, float(n)
        else:
            w_batch = rows_of(self.sample_weight, rows)
            # In float64, as every weight total: float32 weights can sum past
            # float32's range.
            weight = float(np.sum(w_batch, dtype=np.float64))
        c = step.coefficients(
            n, weight, self.row_weight, sample_weight=w_batch, scale=scale
        )
        if c is None:
            return n, 0.0, None, None, 0
        if n == 0:  # a Poisson batch without rows: the penalty alone
            return 0, 0.0, *penalty_step(network, c.total, step.alpha, self.total), 0
        loss, grad = network.gradient(
            X_batch,
            Y_batch,
            c,
            sample_weight=w_batch,
            alpha=step.alpha,
            total_weight=self.total,
            workspace=workspace,
            max_norm=step.max_gradient_norm,
            # Rows of X, whose structure was checked when it came in.
            check_input=False,
        )
        if step.track_noise:
            workspace.noise_estimates = step_estimates(
                network, X_batch, Y_batch, c, grad, step=step, scale=scale, data=self
            )
        return n, weight, loss, grad, workspace.n_clipped

    def objective(self, network, alpha):
        """``E`` on all of the training rows."""
        return network.objective(self.X, self.Y, self.sample_weight, alpha=alpha)


@dataclass(frozen=True)
class Stopping:
    """What the stopping rules and the reports need.

    ``growth`` is the divergence-by-growth rule (:mod:`skbatchnet._growth`);
    a run under differentially private noise passes one that only warns.
    """

    tol: float
    n_iter_no_change: float
    verbose: bool
    growth: LossGrowth = LossGrowth()


def weight_average(average, current, network):
    """The running weight average to train with, per the ``average`` setting.

    ``current`` (the average kept from earlier calls, or None) goes on when
    it fits the network; ``average=False`` gives None.
    """
    if not average:
        return None
    if current is None or current.mean.shape != network.parameters.shape:
        start = 1 if average is True else int(average)
        return WeightAverage(network.parameters.size, network.dtype, start)
    return current


def rows_of(A, batch):
    """``A[batch]`` for a slice or an index array of rows.

    ``ndarray.take`` gathers rows faster than fancy indexing.
    """
    if isinstance(batch, np.ndarray) and isinstance(A, np.ndarray):
        return A.take(batch, axis=0)
    if isinstance(batch, slice) and batch == slice(None):
        return A  # every row: a sparse matrix would be copied
    return A[batch]


def _total(sample_weight):
    return np.sum(sample_weight, dtype=np.float64)


def split_validation(X, Y, y, sample_weight, *, fraction, rng, stratify_by=None):
    """Hold out ``fraction`` of the data, stratified by ``stratify_by`` if given.

    Returns
    -------
    train, validation : list
        ``[X, Y, y, sample_weight]`` of each part (``sample_weight`` None
        without weights).
    """
    if fraction == 0:
        raise ValueError(
            "early_stopping=True needs a held-out set, but validation_fraction "
            "is 0. Set validation_fraction to a value in (0, 1), e.g. 0.1."
        )
    stratify = None
    if stratify_by is not None:
        stratify = stratification(stratify_by, fraction)
    arrays = [X, Y, y] + ([] if sample_weight is None else [sample_weight])
    parts = train_test_split(
        *arrays, random_state=rng, test_size=fraction, stratify=stratify
    )
    train, val = parts[0::2], parts[1::2]
    if val[0].shape[0] < 2:
        raise ValueError(
            "The validation set is too small. Increase validation_fraction or "
            "the size of the data set, or set early_stopping=False."
        )
    if sample_weight is None:
        train, val = train + [None], val + [None]
    elif not (_total(train[-1]) > 0 and _total(val[-1]) > 0):
        side = "held-out" if _total(train[-1]) > 0 else "training"
        raise ValueError(
            f"With early_stopping=True the {side} part of the data has zero "
            "total sample weight. Give more examples a positive weight, "
            "change validation_fraction or random_state, or set "
            "early_stopping=False."
        )
    return train, val


def run_epoch(
    network, data, batches, optimizer, *, step, workspace, averager, noise=None
):
    """One pass of minibatch steps; returns its :class:`EpochSums`.

    ``noise`` (a :class:`GaussianNoise`, or None) is added to every step's
    gradient. A non-finite loss or weights raise :class:`Diverged`.
    """
    loss_sum, weight_sum, seen, steps, clipped = 0.0, 0.0, 0, 0, 0
    noise_g2, noise_trace, noise_steps = 0.0, 0.0, 0
    for number, rows in enumerate(batches, start=1):
        # The optimizer's first factor (SGD's rate, Adam's 1 - beta_1) joins
        # the reduction coefficients: the gradient is linear in them.
        n, weight, loss, grad, batch_clipped = data.gradient(
            network,
            rows,
            scale=optimizer.gradient_scale,
            step=step,
            workspace=workspace,
        )
        if grad is None:
            # A batch with no weight has no gradient to follow, except under
            # a reduction that steps on the penalty alone ('unbiased').
            seen += n
            continue
        if not math.isfinite(loss):
            raise Diverged("loss", number, steps, seen)
        if workspace.noise_estimates is not None:
            noise_g2 += workspace.noise_estimates[0]
            noise_trace += workspace.noise_estimates[1]
            noise_steps += 1
        # Under noise a batch's size is private: rows count as expected.
        counted = n
        if noise is not None:
            noise.add_to(grad, optimizer.gradient_scale)
            counted = int(step.expected_rows)
        optimizer.step([network.parameters], [grad])
        if averager is not None:
            averager.update(network.parameters, counted)
        loss_sum += weight * loss
        weight_sum += weight
        seen += counted
        steps += 1
        clipped += batch_clipped
    # The loss check above sees each step's result only at the next step;
    # this catches an epoch's last step, once per epoch.
    if not np.isfinite(network.parameters).all():
        raise Diverged("weights", number, steps, seen)
    return EpochSums(
        loss_sum, weight_sum, seen, steps, clipped, noise_g2, noise_trace, noise_steps
    )


class NumpyEpochs:
    """Epochs of one fit by the numpy specification, :func:`run_epoch`.

    One workspace serves every batch (a shorter one uses its first rows).
    ``run(order, optimizer, averager)`` answers as
    :meth:`skbatchnet._compiled.CompiledEpochs.run` does. ``noise`` is the
    numpy Generator of DP noise, required when ``step`` has noise.
    """

    def __init__(self, network, data, batcher, step, *, noise=None):
        self.network, self.data, self.batcher, self.step = network, data, batcher, step
        bounds = batcher.bounds(data.n_samples)
        widest = max(stop - start for start, stop in bounds)
        self.workspace = network.workspace(max(widest, 1))
        self.noise = None
        if step.noise_multiplier:
            self.noise = GaussianNoise(noise, step.noise_std(data.row_weight))

    def run(self, order, optimizer, averager):
        """One epoch visiting the rows in ``order`` (None: stored order)."""
        return run_epoch(
            self.network,
            self.data,
            self.batcher.batches(order, self.data.n_samples),
            optimizer,
            step=self.step,
            workspace=self.workspace,
            averager=averager,
            noise=self.noise,
        )


def epoch_runner(network, data, batcher, optimizer, step, *, noise=None):
    """The runner of a fit's epochs: the compiled loop where it can train on
    the data (dense or CSR rows of the network's float type, every option
    with a compiled kernel, the extension built), else :class:`NumpyEpochs`.
    ``noise`` is the Generator of DP noise, when ``step`` has noise."""
    X = getattr(data, "X", None)
    if CompiledEpochs.supports(network, X, optimizer, step):
        return CompiledEpochs(network, data, batcher, step, noise=noise)
    return NumpyEpochs(network, data, batcher, step, noise=noise)


def epoch_loss(sums, data, network, alpha):
    """The epoch loss: each batch's estimate of ``E`` weighted by the batch's
    share of the total weight seen, so it is comparable across batch sizes."""
    if sums.weight_sum == 0:
        # No batch carried weight (drop_last=True can drop every weighted
        # row): no step was taken and no batch estimates the objective, so
        # evaluate it exactly on the training data instead.
        return data.objective(network, alpha)
    return sums.loss_sum / sums.weight_sum


def _penalty(network, data, step, optimizer, batcher):
    """The run's :class:`~skbatchnet._outcome.Penalty`, for a divergence message.

    A step of SGD takes ``rate * (alpha / S)`` of the weights away per unit
    of coefficient mass: 1 with ``'mean'``, the batch's weight with ``'sum'``
    (here a full batch's share of ``S``).
    """
    n, total = data.n_samples, data.total
    largest = float(np.finfo(network.dtype).max)
    penalty = Penalty(step.alpha, total, network.parameters.size, largest)
    if not isinstance(optimizer, SGD):
        return penalty
    mass, mu = 1.0, optimizer.momentum
    if step.reduction == "sum":
        mass = total * resolve_batch_size(batcher.batch_size, n) / n
    limit = 2 * (1 + mu) / (1 + 2 * mu) if optimizer.nesterov else 2 * (1 + mu)
    rate = optimizer.gradient_scale  # the rate rule's factor included
    return penalty._replace(rate=rate, mass=mass, limit=limit)


def _stop_at_best(progress, data, where, advice, *, loss, steps, seen, batch_size):
    """Stop a diverged run at its best validated weights, if it has them.

    With a held-out set and a best model already seen, the epoch is recorded
    with ``loss`` and nan scores, a warning says why training stopped, and
    True is returned (the caller restores the best weights); else False.
    """
    if data.validation is None or progress._best_parameters is None:
        return False
    progress.n_iter += 1
    progress.t += seen
    progress.record(loss, steps, seen, batch_size=batch_size)
    progress.validation_scores.append(np.nan)
    progress.validation_loss_curve.append(np.nan)
    warn(
        f"Training diverged: {where}. Training stops there and keeps the "
        f"weights of the best validation score; {advice}",
        ConvergenceWarning,
    )
    return True


def _diverged(
    progress, error, data, *, step, optimizer, stepped, batch_size, penalty=None
):
    """Handle a non-finite epoch: raise, or stop at the best validated weights."""
    where = (
        f"the {error.what} became non-finite in epoch {progress.n_iter + 1}, "
        f"batch {error.batch}"
    )
    advice = "lower learning_rate_init or scale the inputs to train further."
    epoch = dict(loss=np.nan, steps=error.steps, seen=error.seen, batch_size=batch_size)
    kept = _stop_at_best(progress, data, where, advice, **epoch)
    if not kept:
        raise divergence_error(
            where,
            stepped=stepped or error.steps > 0,
            learning_rate=optimizer.learning_rate,
            reduction=step.reduction,
            penalty=penalty,
        ) from None


def _grew(
    progress, data, sums, loss, *, growth, step, optimizer, stops, penalty, batch_size
):
    """Apply the divergence-by-growth rule to an epoch whose ``loss`` broke it.

    With ``stops``, returns True when training stops at the best validated
    weights, and raises the divergence ValueError when there are none;
    without, warns and returns False: training goes on.
    """
    args = (progress.loss_curve[0], loss, progress.n_iter + 1)
    kw = dict(optimizer=optimizer, reduction=step.reduction, penalty=penalty)
    kw.update(steps=sums.steps)
    if not stops:
        warn(growth.warning(*args, **kw), RuntimeWarning)
        return False
    where, remedy = growth.diagnosis(*args, **kw)
    epoch = dict(loss=loss, steps=sums.steps, seen=sums.seen, batch_size=batch_size)
    if not _stop_at_best(progress, data, where, remedy + ".", **epoch):
        raise growth.error(*args, **kw)
    return True


def interrupted(progress):
    """Warn that training stopped at the last completed epoch (iteration)."""
    warn(
        "Training interrupted by user; the model is kept as it was after "
        f"epoch {progress.n_iter}."
    )


def train_epochs(
    network,
    data,
    epochs,
    optimizer,
    progress,
    *,
    stopping,
    averager,
    rng,
    score,
    report,
    max_iter=None,
):
    """The epoch loop: steps, bookkeeping, stopping rules.

    Runs at most ``epochs.n_epochs`` epochs, each as ``epochs`` (an
    :class:`~skbatchnet._scheduling.Epochs`) gives it: the batch size, the
    rows' order its batcher draws, the runner (:func:`epoch_runner`) and
    the learning rate's factor. ``report(loss)`` is called after each epoch and
    returns True to stop. With ``max_iter``, reaching
    ``progress.n_iter == max_iter`` warns that training has not converged. A
    KeyboardInterrupt, in an epoch or in ``report``, ends training at the
    last completed epoch. A divergence (a non-finite loss or weights, or a
    loss past ``stopping.growth``, :mod:`skbatchnet._growth`) raises a
    ValueError, unless there is a held-out set and a best model: then
    training stops, warning, and the caller restores the best weights. A
    growth past the rule only warns, once, when the first epoch ran in an
    earlier call or the rule does not stop.

    Returns
    -------
    optimizer, averager
        Those in force at the end (an interruption or a divergence restores
        the ones of the last completed epoch).
    """
    # The growth rule stops training only if the first epoch it compares with
    # ran in this call, on this call's data; one run by an earlier call
    # (partial_fit, warm_start=True) may have seen other data, so then it warns.
    growth = stopping.growth
    stops = growth.stops and not progress.loss_curve
    for index in range(epochs.n_epochs):
        checkpoint = Checkpoint(network.parameters, optimizer, averager, rng)
        epoch = epochs.epoch(index)  # after the checkpoint: it draws the order
        step, batcher = epoch.step, epoch.batcher
        optimizer.rate_factor = epoch.rate_factor
        try:
            sums = epoch.runner.run(epoch.order, optimizer, averager)
        except KeyboardInterrupt:
            # Back to the end of the last completed epoch, so the weights
            # agree with n_iter_ and loss_curve_.
            optimizer, averager = checkpoint.restore(network.parameters)
            interrupted(progress)
            break
        except Diverged as error:
            stepped = index > 0 or progress.t > 0
            penalty = _penalty(network, data, step, optimizer, batcher)
            kw = dict(step=step, optimizer=optimizer, stepped=stepped)
            kw.update(batch_size=epoch.batch_size)
            _diverged(progress, error, data, penalty=penalty, **kw)
            # The optimizer and average of the last finite epoch go on.
            optimizer, averager = checkpoint.restore(network.parameters)
            break
        loss = epoch_loss(sums, data, network, step.alpha)
        if growth.broken(progress.loss_curve, loss):
            penalty = _penalty(network, data, step, optimizer, batcher)
            kw = dict(growth=growth, step=step, optimizer=optimizer, stops=stops)
            kw.update(batch_size=epoch.batch_size)
            if _grew(progress, data, sums, loss, penalty=penalty, **kw):
                optimizer, averager = checkpoint.restore(network.parameters)
                break
        progress.n_iter += 1
        progress.t += sums.seen
        clip_fraction = None
        if step.max_gradient_norm is not None:
            clip_fraction = sums.clipped / sums.seen if sums.seen else 0.0
        noise = None
        if step.track_noise:
            noise = (sums.noise_g2, sums.noise_trace, sums.noise_steps)
        progress.record(
            loss, sums.steps, sums.seen, clip_fraction, epoch.batch_size, noise=noise
        )
        if stopping.verbose:
            print(f"Iteration {progress.n_iter}, loss = {loss:.8f}")
        update_stopping(
            progress, network, data.validation, stopping=stopping, score=score
        )
        optimizer.iteration_ends(progress.t)
        try:
            if report(loss):
                break
        except KeyboardInterrupt:
            # The epoch is complete: keep it.
            interrupted(progress)
            break
        if progress._no_improvement_count > stopping.n_iter_no_change:
            what = "Validation score" if data.validation else "Training loss"
            msg = (
                f"{what} did not improve more than tol={stopping.tol:f} for "
                f"{stopping.n_iter_no_change} consecutive epochs."
            )
            if optimizer.trigger_stopping(msg, stopping.verbose):
                break
            progress._no_improvement_count = 0
        if progress.n_iter == max_iter:
            warn(
                f"Stochastic Optimizer: Maximum iterations ({max_iter}) "
                "reached and the optimization hasn't converged yet.",
                ConvergenceWarning,
            )
    return optimizer, averager
