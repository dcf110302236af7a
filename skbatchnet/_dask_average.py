"""Weight averaging on a Dask cluster (local SGD), ``strategy='average'``.

Every block of rows trains its own copy of the network for ``local_steps``
steps with the wrapped estimator's settings, then the client averages the
copies' parameters, each weighted by the sample weight of the rows it trained
on in that round, and the next round starts every copy from the average.

Each copy keeps its own optimizer state (momentum, Adam's moments and step
count) from round to round; only the parameters are averaged. The state
describes the gradients of that block's rows, which is what the next local
steps continue; averaging it would mix statistics the copy never saw, and
resetting it would restart Adam's bias correction every round. The state
travels with the task (client -> worker -> client), so every task stays a
pure function of its inputs and Dask can recompute it.

With plain SGD (no momentum), the ``'mean'`` reduction and one local step on
batches that are the blocks' shares of one global batch, the weighted average
is exactly one step on that global batch: ``sum_k (S_k/S_B)(w - lr g_k) =
w - lr sum_k (S_k/S_B) g_k``, the penalty share ``alpha/S`` being that of the
whole data on every block.
"""

import math
from functools import lru_cache

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from ._dask_data import network_of
from ._optimizers import SOLVERS
from ._progress import update_stopping
from ._training import TrainingData, rows_of, run_epoch
from ._warn import warn
from .batching import Minibatcher, resolve_batch_size


@lru_cache(maxsize=16)
def epoch_batches(seed, n_rows, batching):
    """The batches of one local epoch of a block, a function of ``seed``."""
    batch_size, shuffle, drop_last = batching
    batcher = Minibatcher(
        batch_size, shuffle=shuffle, drop_last=drop_last, random_state=seed
    )
    return next(batcher.iter_epochs(n_rows))


def local_round(parameters, spec, X, Y, w, optimizer, plan, settings):
    """One block's copy trained for the planned steps (a worker's task).

    ``plan`` lists ``(seed, first, stop)``: steps ``first:stop`` of the local
    epoch drawn from ``seed``. Returns the parameters, the optimizer, the
    weight of the rows trained on and their number.
    """
    batching, step, total, epoch = settings
    net = network_of(spec, parameters)
    batches = []
    for seed, first, stop in plan:
        batches += epoch_batches(seed, X.shape[0], batching)[first:stop]
    # Batches are drawn from this block: its own weight per row sets the
    # expected batch weight of 'unbiased' (S_k / n_k, summed in float64).
    n = X.shape[0]
    own = n if w is None else float(np.sum(w, dtype=np.float64))
    data = TrainingData(X, Y, w, total, weight_per_row=own / n)
    seen = run_epoch(
        net,
        data,
        batches,
        optimizer,
        step=step,
        workspace=net.workspace(X.shape[0]),
        averager=None,
    ).seen
    weight = (
        seen
        if w is None
        else sum(float(np.sum(rows_of(w, b), dtype=np.float64)) for b in batches)
    )
    return net.parameters, optimizer, float(weight), seen


class _Shard:
    """A block's place in its own stream of local epochs, and its optimizer."""

    def __init__(self, n_rows, n_steps, optimizer, rng):
        self.n_rows, self.n_steps, self.optimizer = n_rows, n_steps, optimizer
        self.rng, self.position = rng, 0
        self.seed = self._draw()

    def _draw(self):
        return int(self.rng.randint(np.iinfo(np.int32).max))

    def plan(self, steps):
        """The next ``steps`` steps as ``(seed, first, stop)`` segments."""
        out = []
        while steps > 0:
            if self.position == self.n_steps:
                self.seed, self.position = self._draw(), 0
            stop = min(self.n_steps, self.position + steps)
            out.append((self.seed, self.position, stop))
            steps -= stop - self.position
            self.position = stop
        return out


def _nbytes(optimizer):
    return sum(
        a.nbytes
        for value in vars(optimizer).values()
        for a in (value if isinstance(value, list) else [value])
        if isinstance(a, np.ndarray)
    )


def train_local_sgd(context, data, local_steps):
    """Local SGD rounds until ``max_iter`` epochs or the stopping rule.

    ``context`` is the estimator's started
    :class:`~skbatchnet._context.TrainingContext`. An epoch is as many rounds
    as the longest block needs to pass once over its rows; ``loss_curve_``
    holds ``E`` of the averaged weights at the end of each epoch, evaluated on
    all of the data.
    """
    estimator = context.estimator
    net = context.training_network()
    step, stopping = context.step, context.stopping
    params = estimator.get_params(deep=False)
    batching = (estimator.batch_size, estimator.shuffle, estimator.drop_last)
    batcher = Minibatcher(*batching[:1], drop_last=estimator.drop_last)
    estimator.batch_size_ = resolve_batch_size(
        estimator.batch_size, max(data.block_rows)
    )
    shards = [
        _Shard(
            n,
            batcher.n_steps(n),
            SOLVERS[estimator.solver].from_params(params, net.parameters),
            context.rng,
        )
        for n in data.block_rows
    ]
    steps = [s.n_steps if local_steps == "epoch" else local_steps for s in shards]
    rounds = math.ceil(max(s.n_steps for s in shards) / steps[0])
    if local_steps == "epoch":
        rounds = 1
    progress = context.progress
    progress.n_iter = 0
    for epoch in range(1, estimator.max_iter + 1):
        settings = (batching, step, data.total, epoch)
        for _ in range(rounds):
            progress.t += _round(net, data, shards, steps, settings)
        loss = data.objective(net, step.alpha)
        curve, growth = progress.loss_curve, stopping.growth
        # A fit on the cluster starts afresh, so its first epoch saw this
        # data. (A rule that does not stop is for noisy training, which this
        # strategy does not offer.)
        if growth.stops and growth.broken(curve, loss):
            optimizer = shards[0].optimizer
            kw = dict(optimizer=optimizer, reduction=step.reduction)
            raise growth.error(curve[0], loss, epoch, **kw)
        progress.n_iter += 1
        progress.loss_curve.append(loss)
        estimator.loss_ = loss
        update_stopping(progress, net, None, stopping=stopping, score=None)
        if context.stalled():
            break
        if epoch == estimator.max_iter:
            warn(
                f"Stochastic Optimizer: Maximum iterations ({epoch}) reached and "
                "the optimization hasn't converged yet.",
                ConvergenceWarning,
            )
    context.publish()


def _round(net, data, shards, steps, settings):
    """One round: local steps on every block, then the weighted average."""
    client = data.client
    params = client.submit(np.array, net.parameters, pure=False)
    futures = [
        client.submit(
            local_round,
            params,
            data.spec,
            *data.blocks[b],
            shard.optimizer,
            shard.plan(k),
            settings,
            pure=False,
        )
        for b, (shard, k) in enumerate(zip(shards, steps))
    ]
    results = client.gather(futures)
    state = sum(_nbytes(s.optimizer) for s in shards)
    data.traffic["steps"] += 1
    data.traffic["bytes_sent"] += net.parameters.nbytes + state
    data.traffic["bytes_received"] += len(shards) * net.parameters.nbytes + state
    total = sum(weight for _, _, weight, _ in results)
    if total > 0:
        mean = np.zeros_like(net.parameters)
        for parameters, _, weight, _ in results:
            mean += (weight / total) * parameters
        net.parameters[...] = mean
    for shard, (_, optimizer, _, _) in zip(shards, results):
        shard.optimizer = optimizer
    return sum(seen for *_, seen in results)
