"""Training data held on a Dask cluster, and the tasks that reduce it there.

The rows stay where Dask keeps them, one block (chunk) of rows per task input.
A batch's gradient is a weighted sum over its rows, so it splits across the
blocks: each block's task returns the partial sums of the rows it holds,

    ``G_b = sum_i s_i grad(loss_i)``, ``S_b = sum_i s_i``, ``L_b = sum_i s_i loss_i``,

and :class:`ClusterData` adds them in block order and applies the reduction
on the client. Clipped sums add up too, since each example is clipped on its
own, so DP-SGD's noise is added once, on the client, to the added sums (by
the epoch loop, :func:`~skbatchnet._training.run_epoch`). What travels is
parameters and row indices out, partial sums back. Every task is a pure
function of its arguments, and the blocks are computed from a graph, so Dask
can recompute whatever a lost worker held.
"""

import copy
from itertools import pairwise

import dask.array as da
import numpy as np
from dask.core import flatten
from distributed import futures_of
from sklearn.base import is_classifier

from ._step import penalty_step
from ._training import Step, rows_of
from ._validation import check_sparse_structure
from .backprop import Network
from .reduction import Coefficients


def network_of(spec, parameters):
    """A :class:`Network` of ``spec = (layer_units, activation, loss)``."""
    units, activation, loss = spec
    dtype = parameters.dtype
    net = Network(
        [np.empty(shape, dtype) for shape in pairwise(units)],
        [np.empty(n, dtype) for n in units[1:]],
        activation=activation,
        loss=loss,
    )
    net.parameters[...] = parameters
    return net


def partial_sums(parameters, spec, X, Y, w, rows, max_norm=None):
    """``(G_b, S_b, L_b, n_b, k_b)`` over ``rows`` of one block (a worker's
    task), ``k_b`` the rows clipped.

    The coefficients are the rows' weights ``s_i`` (1 without weights) and
    the penalty is left out: the reduction and the penalty need the whole
    batch, which only the client sees. Clipping is each example's own, so
    clipped sums add up across blocks.
    """
    # Before scipy slices a sparse block: its rows are read by index.
    check_sparse_structure(X)
    net = network_of(spec, parameters)
    X, Y = rows_of(X, rows), rows_of(Y, rows)
    w = None if w is None else rows_of(w, rows)
    n = X.shape[0]
    # In float64, as every weight total: float32 weights can overflow float32.
    weight = float(n) if w is None else float(np.sum(w, dtype=np.float64))
    c = Coefficients(1.0 if w is None else w, weight)
    ws = net.workspace(n)
    loss, grad = net.gradient(
        X, Y, c, sample_weight=w, workspace=ws, max_norm=max_norm, check_input=False
    )
    # gradient() returns the weighted mean loss; the client needs the sum.
    return grad.copy(), weight, loss * weight, n, ws.n_clipped


def as_dask_array(value, name):
    """``value`` as a dask array, and its column names if it was a DataFrame."""
    columns = None
    if hasattr(value, "to_dask_array"):  # a dask DataFrame or Series
        columns = list(getattr(value, "columns", [])) or None
        # Partition lengths are unknown by design; the row blocks need them.
        value = value.to_dask_array(lengths=True)
    if not isinstance(value, da.Array):
        raise TypeError(
            f"DataParallel.fit takes dask arrays or dask DataFrames, but {name} is "
            f"a {type(value).__name__}. Wrap in-memory data with "
            f"dask.array.from_array({name}, chunks=...) or fit the estimator "
            "itself."
        )
    if any(np.isnan(size) for size in value.chunks[0]):
        raise ValueError(
            f"{name} has unknown chunk sizes (NaN) along the rows, so its rows "
            f"cannot be addressed. Call {name}.compute_chunk_sizes() first (for "
            "a dask DataFrame, to_dask_array(lengths=True))."
        )
    return value, columns


class ClusterData:
    """Row blocks on a cluster, answering training as :class:`TrainingData` does.

    Parameters
    ----------
    client : distributed.Client
    blocks : list of tuple
        ``(X, Y, w)`` futures of each block, ``w`` None without weights.
    block_rows : list of int
    total : float
        ``S``, the total sample weight.
    spec : tuple
        ``(layer_units, activation, loss)`` of the network.
    max_weight : float or None, default=None
        The largest sample weight, computed on the workers; None without
        weights.

    Attributes
    ----------
    traffic : dict
        The fit's round trips (``steps``) and their payloads
        (``bytes_sent``, ``bytes_received``), counted by this data and the
        copies :meth:`with_total` makes of it.
    """

    validation = None

    def __init__(self, client, blocks, block_rows, total, spec, max_weight=None):
        self.client, self.blocks, self.total, self.spec = client, blocks, total, spec
        self.max_weight = max_weight
        self.block_rows = [int(n) for n in block_rows]
        self.offsets = np.cumsum([0, *self.block_rows])
        self.n_samples = int(self.offsets[-1])
        self.traffic = {"steps": 0, "bytes_sent": 0, "bytes_received": 0}

    @property
    def row_weight(self):
        """The expected weight of a row drawn: ``S / n``."""
        return self.total / self.n_samples

    def with_total(self, total):
        """The same blocks, with ``S`` set to ``total`` (rows drawn at ``S / n``).

        A shallow copy: it counts its traffic in this data's ``traffic``.
        """
        data = copy.copy(self)
        data.total = float(total)
        return data

    def split(self, rows):
        """``[(block, local rows)]`` of a batch, blocks in order, none empty."""
        if isinstance(rows, slice):
            start, stop, _ = rows.indices(self.n_samples)
            out = []
            for b, (lo, hi) in enumerate(pairwise(self.offsets)):
                if max(start, lo) < min(stop, hi):
                    local = slice(int(max(start, lo) - lo), int(min(stop, hi) - lo))
                    out.append((b, local))
            return out
        block = np.searchsorted(self.offsets, rows, side="right") - 1
        order = np.argsort(block, kind="stable")
        cuts = np.searchsorted(block[order], np.arange(len(self.block_rows) + 1))
        # Rows within a block fit in 32 bits: half the bytes to send.
        return [
            (b, (rows[order[lo:hi]] - self.offsets[b]).astype(np.int32))
            for b, (lo, hi) in enumerate(pairwise(cuts))
            if hi > lo
        ]

    def submit(self, parameters, rows, max_norm=None):
        """The partial-sum tasks of one batch, in block order.

        A batch without rows (an empty Poisson batch) has none, and costs no
        round trip.
        """
        parts = self.split(rows)
        if not parts:
            return []
        # One task holds the parameters; the blocks' tasks fetch them from
        # the worker that has it, so the client sends them once per step.
        params = self.client.submit(np.array, parameters, pure=False)
        self.traffic["steps"] += 1
        self.traffic["bytes_sent"] += parameters.nbytes + sum(
            getattr(r, "nbytes", 0) for _, r in parts
        )
        return [
            self.client.submit(
                partial_sums, params, self.spec, *self.blocks[b], r, max_norm
            )
            for b, r in parts
        ]

    def gather(self, futures):
        if not futures:
            return []
        results = self.client.gather(futures)
        self.traffic["bytes_received"] += sum(g.nbytes + 24 for g, *_ in results)
        return results

    def gradient(self, network, rows, *, scale, step, workspace=None):
        """As :meth:`TrainingData.gradient`, from the blocks' partial sums.

        The batch is reduced as one whose weighted sum is given: each row's
        coefficient is ``s_i`` times that of one unit of weight
        (:meth:`~skbatchnet._step.Step.coefficients`, the step decisions of
        the in-memory data). The caller adds DP noise to the result.
        """
        futures = self.submit(network.parameters, rows, step.max_gradient_norm)
        parts = self.gather(futures)
        n = sum(p[3] for p in parts)
        weight = sum(p[1] for p in parts)
        c = step.coefficients(n, weight, self.row_weight, scale=scale)
        if c is None:
            return n, 0.0, None, None, 0
        if n == 0:  # a Poisson batch without rows: the penalty alone
            return 0, 0.0, *penalty_step(network, c.total, step.alpha, self.total), 0
        grad = parts[0][0]
        for g, *_ in parts[1:]:
            grad += g
        grad *= c.c
        W = network.parameters[: network.n_coefs]
        loss = sum(p[2] for p in parts) / weight if weight else 0.0
        if step.alpha:
            grad[: network.n_coefs] += W * (step.alpha * c.total / self.total)
            loss += 0.5 * step.alpha * network.penalty() / self.total
        return n, weight, loss, grad, sum(p[4] for p in parts)

    def objective(self, network, alpha):
        """``E`` on all of the rows."""
        step = Step(alpha=alpha, reduction="mean")
        return self.gradient(network, slice(None), scale=1.0, step=step)[2]


def distribute(client, context, X, y, sample_weight):
    """Validate the data on the cluster, fit the target encoding, persist blocks.

    Sets the first-pass attributes (``n_features_in_``, ``classes_``...) of
    the estimator of ``context`` (its
    :class:`~skbatchnet._context.TrainingContext`) from a few probe rows,
    never from the data itself.

    Returns
    -------
    data : ClusterData
        With ``dtype`` and ``n_outputs`` set, and without the network spec,
        which the caller fills in once the network is drawn.
    """
    X, columns = as_dask_array(X, "X")
    y, _ = as_dask_array(y, "y")
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D, got {X.ndim} dimensions.")
    if not isinstance(X._meta, np.ndarray):
        raise TypeError(
            f"DataParallel needs dense blocks of X, got {type(X._meta).__name__}; "
            "convert them with X.map_blocks(lambda b: b.toarray())."
        )
    if X.numblocks[1] > 1:
        # A task sees whole rows: blocks split along the columns are joined.
        X = X.rechunk({1: -1})
    rows = X.chunks[0]
    arrays = {"y": y}
    if sample_weight is not None:
        arrays["sample_weight"] = as_dask_array(sample_weight, "sample_weight")[0]
    for name, A in arrays.items():
        if A.shape[0] != X.shape[0]:
            raise ValueError(
                f"X has {X.shape[0]} rows but {name} has {A.shape[0]}; they must "
                "have the same number of rows."
            )
        arrays[name] = A.rechunk((rows,) + A.shape[1:])
    y, w = arrays["y"], arrays.get("sample_weight")
    dtype = np.float32 if X.dtype == np.float32 else np.float64
    X = X.astype(dtype)
    estimator = context.estimator
    classifier = is_classifier(estimator)
    if classifier and y.ndim > 1 and y.shape[1] > 1:
        raise ValueError(
            "DataParallel does not support multilabel targets (2-D y) for "
            "classifiers yet; fit the estimator in memory."
        )
    # Summaries only, computed where the blocks are: the largest weight too,
    # which a private fit checks (weights above 1 would exceed C).
    checks = {
        "finite_X": da.isfinite(X).all(),
        "targets": da.unique(y.ravel()) if classifier else da.isfinite(y).all(),
    }
    if w is not None:
        checks.update(w_min=w.min(), w_max=w.max(), w_sum=w.sum(dtype=np.float64))
    if getattr(estimator, "loss", None) == "poisson":
        checks["y_min"] = y.min()
    stats = dict(zip(checks, client.gather(client.compute(list(checks.values())))))
    _check_stats(stats, classifier)
    probe_y = stats["targets"] if classifier else np.zeros((1,) + y.shape[1:], dtype)
    probe_X = np.zeros((len(probe_y), X.shape[1]), dtype)
    if columns is not None:
        import pandas as pd

        probe_X = pd.DataFrame(probe_X, columns=columns)
    # The estimator's own encoding, fitted on one probe row per class.
    context.objective(probe_X, probe_y, mode="fit")
    encoding = context.target_encoding()
    n_outputs = encoding(probe_y, dtype).shape[1]
    persisted = client.persist([A for A in (X, y, w) if A is not None])
    Xb, yb = _block_futures(persisted[0]), _block_futures(persisted[1])
    wb = _block_futures(persisted[2]) if w is not None else [None] * len(Xb)
    Yb = [client.submit(encoding, f, dtype) for f in yb]
    total = float(X.shape[0]) if w is None else float(stats["w_sum"])
    max_weight = None if w is None else float(stats["w_max"])
    data = ClusterData(client, list(zip(Xb, Yb, wb)), rows, total, None, max_weight)
    data.dtype, data.n_outputs = dtype, n_outputs
    return data


def _check_stats(stats, classifier):
    if not stats["finite_X"]:
        raise ValueError(
            "X contains NaN or infinity; remove or impute those values (for "
            "example with sklearn.impute.SimpleImputer) before fitting."
        )
    w_min, w_sum = stats.get("w_min", 1.0), stats.get("w_sum", 1.0)
    if not (np.isfinite(w_sum) and w_min >= 0 and w_sum > 0):
        raise ValueError(
            "sample_weight must be finite and non-negative with a positive sum, "
            f"got a minimum of {float(w_min)!r} and a sum of {float(w_sum)!r}."
        )
    if not classifier and not stats["targets"]:
        raise ValueError("y contains NaN or infinity; every target must be finite.")
    if stats.get("y_min", 0) < 0:
        raise ValueError(
            "loss='poisson' requires non-negative targets y; got a minimum of "
            f"{float(stats['y_min'])!r}. Use loss='squared_error' or shift the targets."
        )


def _block_futures(A):
    """The futures of a persisted array's blocks, in row order."""
    futures = {f.key: f for f in futures_of(A)}
    return [futures[key] for key in flatten(A.__dask_keys__())]
