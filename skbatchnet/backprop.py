"""The backprop core: a dense network, its per-example terms, and the reduction.

The objective on a training set with sample weights ``s_i`` and total weight
``S = sum_i s_i`` is::

    E(W, b) = (1/S) sum_i s_i loss_i + (alpha / 2S) ||W||^2

(biases are not penalized). Writing it as ``E = (1/S) sum_i s_i e_i`` with the
per-example term ``e_i = loss_i + (alpha / 2S) ||W||^2`` shows that each
example carries its share of the penalty, so its gradient is::

    g_i = grad(loss_i) + (alpha / S) W.

A minibatch step combines the ``g_i`` of the batch with a *reduction*
(:func:`~skbatchnet.reduction.reduction_coefficients`): ``'mean'`` gives
``sum_i s_i g_i / sum_i s_i``, which for a batch drawn uniformly at random is
an unbiased estimate of ``grad E`` when the sample weights are equal (a
slightly biased ratio estimator otherwise, exact for the whole set);
``'sum'`` gives ``sum_i s_i g_i``, an unbiased estimate of ``|B| grad E``
with unit weights. Because
the reduced gradient is a weighted sum ``sum_i c_i g_i``, the backward pass
scales each example's output error by ``c_i`` once and then needs one matrix
product per layer for the whole batch, instead of one backprop per example.

Examples
--------
>>> import numpy as np
>>> from skbatchnet.backprop import Network
>>> rng = np.random.RandomState(0)
>>> X, y = rng.randn(6, 4), rng.randn(6)
>>> net = Network.initialize([4, 8, 1], activation="tanh", random_state=0)
>>> loss, coef_grads, intercept_grads = net.batch_gradient(X, y, alpha=1e-4)
>>> [g.shape for g in coef_grads]
[(4, 8), (8, 1)]
>>> per_example = net.per_example_gradients(X, y, alpha=1e-4)
>>> np.allclose(per_example[0][0].mean(axis=0), coef_grads[0])
True
"""

import contextlib
import functools
import math
from itertools import pairwise
from numbers import Real

import numpy as np
import scipy.sparse as sp
from scipy.linalg.blas import get_blas_funcs
from sklearn import get_config
from sklearn.utils import check_random_state
from threadpoolctl import ThreadpoolController  # a requirement of scikit-learn

from ._activations import ACTIVATIONS, DERIVATIVES
from ._losses import LOSSES
from .reduction import REDUCTIONS, reduction_coefficients

__all__ = ["Network", "Workspace", "reduction_coefficients", "REDUCTIONS"]

# Cache budgets of one chunk of rows, in MiB (see Network.chunk_rows). A
# training chunk also carries its deltas and the gradient it adds to the
# batch's, and pays some forty numpy calls: chunks of a few thousand rows
# amortize that. Prediction has none of it, so its chunks are sized for a
# core's L2 cache (a few MiB on current CPUs), which keeps its passes fast
# when other processes crowd the shared L3: at 10^5 rows through a
# (64, 128, 128, 10) network, 99-104 ms instead of 112-127 on a crowded
# machine, and 91-93 instead of 90 on a quiet one.
_CACHE_MIB = 8
_FORWARD_CACHE_MIB = 2

# Below this many rows per batch the matrix products are too small to gain
# from BLAS threads, whose start-up and synchronization then dominate (badly
# so on a busy machine); such batches run on one BLAS thread
# (Workspace.blas_threads), as scikit-learn's KMeans does for its small
# products.
SMALL_BATCH_ROWS = 64


@functools.cache
def _threadpools():
    return ThreadpoolController()


def _dot(A, W, out):
    """``out = A @ W`` for dense or sparse ``A`` without an extra temporary."""
    if sp.issparse(A):
        out[...] = A @ W
        return out
    return np.matmul(A, W, out=out)


def _dense_product(n_rows):
    """``np.dot`` or ``np.matmul`` for dense products of ``n_rows`` rows.

    Both call the same BLAS gemm. np.dot has less call overhead (about half
    a microsecond), which counts for small batches; np.matmul sets up the
    call so that large products run faster (at 1024 rows, 4-8% on products
    with 128 columns and about 30% on the output layer's error sent back,
    1024 x 10 times 10 x 128).
    """
    return np.dot if n_rows < SMALL_BATCH_ROWS else np.matmul


def _weight_gradient(A, delta, out, gemm=None, beta=0.0):
    """``out = A.T @ delta + beta * out``: one layer's weight gradient.

    ``A`` is dense. Without ``gemm`` (a scipy BLAS gemm) ``beta`` must be 0
    and numpy does the product. With it, the product is done in place: in
    Fortran order it reads ``out.T = delta.T @ A``, and each of those
    operands is a transposed view of a C-contiguous buffer, so gemm reads and
    writes them where they are, adding onto what ``out`` holds (the weight
    decay) when ``beta=1``.
    """
    if gemm is not None:
        gemm(1.0, delta.T, A.T, beta=beta, c=out.T, trans_b=True, overwrite_c=True)
        return out
    if A.shape[0] == 1:
        # An outer product: np.matmul takes a slow non-BLAS path when the
        # inner dimension is 1 (about 4x slower than np.dot at batch_size=1).
        return np.dot(A.T, delta, out=out)
    return np.matmul(A.T, delta, out=out)


def _as_2d_target(y, dtype):
    y = np.asarray(y, dtype=dtype)
    return y.reshape(-1, 1) if y.ndim == 1 else y


def _views(flat, shapes):
    """Consecutive views of ``flat`` with the given shapes."""
    views, start = [], 0
    for shape in shapes:
        size = math.prod(shape)
        views.append(flat[start : start + size].reshape(shape))
        start += size
    return views


def _parameter_shapes(layer_units):
    """Weights first, then biases: the order of scikit-learn's packed vector."""
    coefs = list(pairwise(layer_units))
    return coefs, [(u,) for u in layer_units[1:]]


class Workspace:
    """Buffers for forward and backward passes on batches of one size.

    Training loops call :meth:`Network.batch_gradient` thousands of times on
    batches of the same shape; handing it a workspace lets every call write
    into the same arrays instead of allocating new ones. The arrays returned by
    a call that used a workspace are overwritten by the next such call.

    A workspace of fewer than ``SMALL_BATCH_ROWS`` (64) rows is meant to be
    used on one BLAS thread (:meth:`blas_threads`), and computes weight
    gradients with scipy's BLAS, adding each onto the L2 term in place.

    Parameters
    ----------
    layer_units : list of int
        Units per layer, input first.
    n_samples : int
        Rows per batch.
    dtype : numpy dtype
        Floating dtype of the network.

    Attributes
    ----------
    gradient : ndarray of shape (n_parameters,)
        The reduced gradient as one vector, laid out like
        :attr:`Network.parameters`; ``coef_grads`` and ``intercept_grads`` are
        views into it.
    """

    def __init__(self, layer_units, n_samples, dtype):
        self.n_samples = n_samples
        self.activations = [np.empty((n_samples, u), dtype) for u in layer_units[1:]]
        coef_shapes, intercept_shapes = _parameter_shapes(layer_units)
        n_coefs = sum(a * b for a, b in coef_shapes)
        self.gradient = np.empty(n_coefs + sum(layer_units[1:]), dtype)
        views = _views(self.gradient, coef_shapes + intercept_shapes)
        self.coef_grads = views[: len(coef_shapes)]
        self.intercept_grads = views[len(coef_shapes) :]
        self.penalty = np.empty(n_coefs, dtype)
        # Small batches run on one BLAS thread (blas_threads), so scipy's
        # gemm can be used without its thread pool contending with numpy's
        # on the same cores. Its ``C = A.T @ delta + C`` adds each layer's
        # gradient onto the weight decay in one pass, and on a few rows it
        # is several times quicker than np.dot, whose outer-product path is
        # slow (at one row: 2.5 vs 6.3 us for a 128 x 128 layer).
        # BLAS has no other floating types: for them (float16, longdouble)
        # scipy would pick a gemm of another type and write into a copy.
        blas_type = np.dtype(dtype) in (np.float32, np.float64)
        self._gemm = (
            get_blas_funcs("gemm", dtype=dtype)
            if blas_type and n_samples < SMALL_BATCH_ROWS
            else None
        )
        # Bias gradients are column sums of the deltas, ones @ delta: a BLAS
        # product is several times quicker than a numpy reduction along rows,
        # and runs on every BLAS thread.
        self.ones = np.ones(n_samples, dtype)
        # With one row, a layer's delta *is* its bias gradient: the deltas then
        # live in the gradient vector and those products are skipped.
        self._deltas_are_bias_gradients = n_samples == 1
        if self._deltas_are_bias_gradients:
            self.deltas = [g.reshape(1, -1) for g in self.intercept_grads]
        else:
            self.deltas = [np.empty((n_samples, u), dtype) for u in layer_units[1:]]
        self._accumulator = None

    def rows(self, n_rows):
        """``(activations, deltas)`` for a batch of ``n_rows`` rows.

        Buffers hold rows contiguously, so a shorter batch (a short last
        batch, the last chunk of a large one) uses views of their first rows.
        """
        if n_rows == self.n_samples:
            return self.activations, self.deltas
        if n_rows > self.n_samples:
            raise ValueError(
                f"The workspace holds batches of at most {self.n_samples} rows; "
                f"got {n_rows}."
            )
        return (
            [A[:n_rows] for A in self.activations],
            [D[:n_rows] for D in self.deltas],
        )

    def blas_threads(self):
        """The BLAS thread limit to train in: one thread for small batches.

        A context manager, entered once around a training loop (entering it
        costs far more than a step).
        """
        if self.n_samples >= SMALL_BATCH_ROWS:
            return contextlib.nullcontext()
        return _threadpools().limit(limits=1, user_api="blas")

    def accumulator(self):
        """A second gradient vector, for summing chunks of a large batch."""
        if self._accumulator is None:
            self._accumulator = np.empty_like(self.gradient)
        return self._accumulator


def chunk_rows(layer_units, dtype, working_memory=None):
    """Rows per chunk so that a chunk's buffers fit in ``working_memory``.

    A row of a batch needs, per layer after the input, an activation and a
    delta: ``2 * sum(units)`` floats. The budget
    is scikit-learn's ``working_memory`` setting (in MiB), as for its other
    chunked computations.

    Examples
    --------
    >>> chunk_rows([100, 256, 1], np.float64, working_memory=1)
    255
    """
    if working_memory is None:
        working_memory = get_config()["working_memory"]
    row_bytes = np.dtype(dtype).itemsize * 2 * sum(layer_units[1:])
    return max(1, int(working_memory * 2**20 // row_bytes))


def _chunks(n_rows, size):
    """Slices covering ``range(n_rows)`` in ``ceil(n_rows / size)`` chunks.

    The chunks differ in length by at most one row, and none exceeds
    ``size``. Cutting chunks of exactly ``size`` rows can leave a short last
    one (1025 rows in chunks of 1024 end with a single row), whose products
    run far below the BLAS rate of the others.
    """
    count = -(-n_rows // size)
    return [slice(i * n_rows // count, (i + 1) * n_rows // count) for i in range(count)]


class Network:
    """A fully connected network with a canonical-link output loss.

    The parameters use scikit-learn's layout: ``coefs[l]`` has shape
    ``(fan_in, fan_out)`` and maps layer ``l`` to layer ``l + 1``;
    ``intercepts[l]`` has shape ``(fan_out,)``. The network copies them into
    one contiguous vector, :attr:`parameters` (all weights, then all biases,
    as scikit-learn packs them), of which ``coefs`` and ``intercepts`` are
    views: an optimizer then updates every parameter with a handful of
    vector operations, and the L2 penalty touches one slice.

    Parameters
    ----------
    coefs : list of ndarray
        Weight matrices, input layer first.
    intercepts : list of ndarray
        Bias vectors, one per weight matrix.
    activation : {'identity', 'logistic', 'tanh', 'relu'}, default='relu'
        Activation of the hidden layers.
    loss : {'squared_error', 'poisson', 'binary_log_loss', 'log_loss'}, \
            default='squared_error'
        Output loss; it fixes the output activation (identity, exp, logistic,
        softmax).

    Attributes
    ----------
    parameters : ndarray of shape (n_parameters,)
        All weights, then all biases, in one vector.
    coefs : list of ndarray
        Views of ``parameters``, one weight matrix per layer.
    intercepts : list of ndarray
        Views of ``parameters``, one bias vector per layer.
    n_coefs : int
        Number of weights (the penalized leading part of ``parameters``).
    activation, loss : str
        As given.

    Examples
    --------
    >>> import numpy as np
    >>> net = Network.initialize([3, 5, 2], loss="log_loss", random_state=0)
    >>> proba = net.forward(np.ones((4, 3)))
    >>> proba.shape, bool(np.allclose(proba.sum(axis=1), 1))
    ((4, 2), True)
    """

    def __init__(self, coefs, intercepts, *, activation="relu", loss="squared_error"):
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}."
            )
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {loss!r}.")
        if len(coefs) != len(intercepts) or not coefs:
            raise ValueError(
                "coefs and intercepts must be non-empty lists of the same length, "
                f"got {len(coefs)} and {len(intercepts)}."
            )
        dtype = np.result_type(*coefs)
        shapes = [np.shape(W) for W in coefs] + [np.shape(b) for b in intercepts]
        # math.prod: numpy's prod costs microseconds per tiny tuple, and
        # prediction builds a network on every call.
        self.n_coefs = sum(math.prod(shape) for shape in shapes[: len(coefs)])
        self.parameters = np.empty(sum(math.prod(sh) for sh in shapes), dtype)
        views = _views(self.parameters, shapes)
        for view, value in zip(views, list(coefs) + list(intercepts)):
            view[...] = value
        self.coefs = views[: len(coefs)]
        self.intercepts = views[len(coefs) :]
        self.activation = activation
        self.loss = loss

    @classmethod
    def initialize(
        cls,
        layer_units,
        *,
        activation="relu",
        loss="squared_error",
        random_state=None,
        dtype=np.float64,
    ):
        """Draw weights and biases as scikit-learn's MLP does.

        Glorot-uniform: every layer draws ``U(-b, b)`` with
        ``b = sqrt(6 / (fan_in + fan_out))`` (``sqrt(2 / ...)`` for the
        logistic activation), the weight matrix first and then the biases,
        layer by layer, from the same random stream. Same draws in the same
        order means the same starting point as scikit-learn for the same seed.

        Parameters
        ----------
        layer_units : sequence of int
            Units per layer, input first, output last.
        activation, loss : str
            As in :class:`Network`.
        random_state : int, RandomState instance or None, default=None
            A RandomState instance is advanced in place.
        dtype : numpy dtype, default=np.float64
            Floating dtype of the parameters.

        Returns
        -------
        network : Network
        """
        rng = check_random_state(random_state)
        factor = 2.0 if activation == "logistic" else 6.0
        coefs, intercepts = [], []
        for fan_in, fan_out in pairwise(layer_units):
            bound = np.sqrt(factor / (fan_in + fan_out))
            coefs.append(rng.uniform(-bound, bound, (fan_in, fan_out)).astype(dtype))
            intercepts.append(rng.uniform(-bound, bound, fan_out).astype(dtype))
        return cls(coefs, intercepts, activation=activation, loss=loss)

    @property
    def layer_units(self):
        """Units per layer, input first."""
        return [self.coefs[0].shape[0]] + [W.shape[1] for W in self.coefs]

    @property
    def dtype(self):
        return self.coefs[0].dtype

    @property
    def out_activation(self):
        """Name of the output activation fixed by the loss."""
        return LOSSES[self.loss].out_activation

    def chunk_rows(self, cache_mib=_CACHE_MIB):
        """Rows processed at once.

        At most what fits in scikit-learn's ``working_memory``, and at most
        what fits in ``cache_mib`` MiB (8 by default): past a few thousand
        rows matrix products do not get faster, while activations that no
        longer fit in cache make every elementwise pass (bias, activation,
        derivative) stream from main memory.
        """
        return min(
            chunk_rows(self.layer_units, self.dtype),
            chunk_rows(self.layer_units, self.dtype, working_memory=cache_mib),
        )

    def workspace(self, n_samples):
        """Buffers for batches of up to ``n_samples`` rows (:class:`Workspace`).

        A batch larger than :meth:`chunk_rows` is computed in chunks, so its
        buffers never exceed one chunk.
        """
        return Workspace(
            self.layer_units, min(n_samples, self.chunk_rows()), self.dtype
        )

    def _forward(self, X, activations):
        """Fill ``activations`` (one buffer per layer after the input).

        Hidden layers hold ``f(Z)``; the last buffer holds the raw output
        pre-activation ``Z``, from which losses are computed stably.
        """
        hidden = ACTIVATIONS[self.activation]
        # Only the input can be sparse (or of another dtype); every later
        # product is dense, within the network's dtype, into C-contiguous
        # buffers.
        _dot(X, self.coefs[0], activations[0])
        product = _dense_product(X.shape[0])
        for W, b, A, out in zip(
            self.coefs[1:], self.intercepts, activations, activations[1:]
        ):
            A += b
            hidden(A)
            product(A, W, out=out)
        Z = activations[-1]
        Z += self.intercepts[-1]
        return Z

    def forward(self, X):
        """Predictions ``f(Z)`` of the output layer, in freshly allocated memory.

        Computed in chunks of at most :meth:`chunk_rows` rows, with buffers of
        its own, so concurrent calls never share memory.

        Parameters
        ----------
        X : {ndarray, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        output : ndarray of shape (n_samples, n_outputs)
        """
        Z = self.decision_function(X)
        return LOSSES[self.loss].activation(Z, Z)

    def decision_function(self, X):
        """Raw output pre-activations ``Z`` (logits), freshly allocated."""
        n = X.shape[0]
        out = np.empty((n, self.layer_units[-1]), self.dtype)
        chunk = self.chunk_rows(_FORWARD_CACHE_MIB)
        activations = [
            np.empty((min(n, chunk), u), self.dtype) for u in self.layer_units[1:-1]
        ]
        for rows in _chunks(n, chunk):
            buffers = [A[: rows.stop - rows.start] for A in activations]
            self._forward(X[rows], buffers + [out[rows]])
        return out

    def output_from_logits(self, Z):
        """The output activation ``f(Z)``, in new memory."""
        return LOSSES[self.loss].activation(Z, np.empty_like(Z))

    def per_example_loss_from_logits(self, y, Z):
        """``loss_i`` computed from the logits ``Z`` (see :meth:`per_example_loss`)."""
        return LOSSES[self.loss].per_example(_as_2d_target(y, Z.dtype), Z)

    def per_example_loss(self, X, y):
        """Data loss of each example, ``loss_i`` (no penalty, no weight).

        Parameters
        ----------
        X : {ndarray, sparse matrix} of shape (n_samples, n_features)
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)

        Returns
        -------
        loss : ndarray of shape (n_samples,)
        """
        return self.per_example_loss_from_logits(y, self.decision_function(X))

    def penalty(self):
        """``||W||^2``, the squared norm of all weights (biases excluded)."""
        W = self.parameters[: self.n_coefs]
        return float(np.dot(W, W))

    def objective(self, X, y, sample_weight=None, *, alpha=0.0):
        """The objective ``E`` on the data given (taken as the whole set).

        ``E = (1/S) sum_i s_i loss_i + (alpha / 2S) ||W||^2`` with
        ``S = sum_i s_i``.
        """
        losses = self.per_example_loss(X, y)
        if sample_weight is None:
            total, data = losses.shape[0], losses.mean()
        else:
            total = sample_weight.sum()
            data = np.dot(sample_weight, losses) / total
        return float(data) + 0.5 * alpha * self.penalty() / float(total)

    def batch_gradient(
        self,
        X,
        y,
        sample_weight=None,
        *,
        alpha=0.0,
        total_weight=None,
        reduction="mean",
        scale=1.0,
        workspace=None,
    ):
        """Loss and reduced gradient of one batch: ``sum_i c_i g_i``.

        ``g_i = grad(loss_i) + (alpha / S) W`` and the coefficients ``c_i``
        come from :func:`~skbatchnet.reduction.reduction_coefficients`. With
        ``reduction='mean'`` and the batch being the whole set this is
        ``grad E``.

        A batch with more rows than :meth:`chunk_rows` is computed chunk by
        chunk and the chunks' gradients summed: the reduced gradient is a sum
        over examples, so the result equals the one-pass computation up to
        rounding while memory stays bounded by ``working_memory``.

        Parameters
        ----------
        X : {ndarray, sparse matrix} of shape (n_samples, n_features)
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : ndarray of shape (n_samples,), default=None
        alpha : float, default=0.0
            L2 penalty strength of the objective.
        total_weight : float, default=None
            ``S``, the total sample weight of the *whole training set*, which
            sets each example's share of the penalty. Defaults to this batch's
            total weight, i.e. the batch is taken as the whole set.
        reduction : {'mean', 'sum'}, default='mean'
        scale : float, default=1.0
            Returns ``scale`` times the reduced gradient (the loss is not
            scaled). The factor joins the coefficients ``c_i``, so it costs
            nothing: an optimizer whose update starts by scaling the gradient
            (SGD by its learning rate) saves a pass over the parameters.
        workspace : Workspace, default=None
            Buffers to write into (see :class:`Workspace`); by default the
            returned arrays are freshly allocated.

        Returns
        -------
        loss : float
            The batch estimate of ``E``: the weighted mean of ``loss_i`` over
            the batch plus ``(alpha / 2S) ||W||^2``, whatever the reduction.
        coef_grads : list of ndarray
            Same shapes as ``coefs``.
        intercept_grads : list of ndarray
            Same shapes as ``intercepts``.
        """
        n = X.shape[0]
        ws = workspace if workspace is not None else self.workspace(n)
        Y = _as_2d_target(y, self.dtype)
        c, c_total = reduction_coefficients(sample_weight, n, reduction)
        if scale != 1.0:
            c, c_total = c * scale, c_total * scale
        weight = n if sample_weight is None else float(sample_weight.sum())
        if total_weight is None:
            total_weight = weight
        # The penalty's part of the reduced gradient:
        # sum_i c_i (alpha / S) W = (alpha / S) (sum_i c_i) W.
        decay = alpha * c_total / float(total_weight) if alpha else 0.0

        if n <= ws.n_samples:
            loss_sum = self._backward(X, Y, c, sample_weight, ws, decay=decay)
        else:
            total = ws.accumulator()
            loss_sum = 0.0
            for rows in _chunks(n, ws.n_samples):
                first = rows.start == 0
                loss_sum += self._backward(
                    X[rows],
                    Y[rows],
                    c if isinstance(c, Real) else c[rows],
                    None if sample_weight is None else sample_weight[rows],
                    ws,
                    decay=decay if first else 0.0,  # the penalty counts once
                )
                if first:
                    total[...] = ws.gradient
                else:
                    total += ws.gradient
            ws.gradient[...] = total
        # A batch without weight has no data term (and, for 'sum', no step).
        loss = loss_sum / weight if weight else 0.0
        if alpha:
            loss += 0.5 * alpha * self.penalty() / float(total_weight)
        return loss, ws.coef_grads, ws.intercept_grads

    def _backward(
        self, X, Y, c, sample_weight, ws, gradients=True, cross=None, decay=0.0
    ):
        """Forward and backward pass of one chunk into ``ws``.

        Fills the deltas (``d loss_i / d z`` of every layer, row i scaled by
        ``c_i``) and, with ``gradients``, ``ws.gradient`` with
        ``sum_i c_i grad(loss_i) + decay * W`` (biases not decayed). Returns
        ``sum_i s_i loss_i``.

        With ``cross`` (a list, one entry per layer), stores for every layer
        above the input ``a_i^T W d_i`` row by row: ``W d_i`` is the error
        sent to the layer below before the activation's derivative is
        applied, so it costs a row-wise dot product, not a matrix product.
        """
        activations, deltas = ws.rows(X.shape[0])
        ones = ws.ones[: X.shape[0]]
        Z = self._forward(X, activations)
        # Canonical link: d loss_i / d z_i = f(z_i) - y_i, written with the
        # losses in one go. Scaling row i by c_i here carries the reduction
        # through every layer's matrix product.
        delta = deltas[-1]
        losses = LOSSES[self.loss].error(Y, Z, delta)
        if sample_weight is None:
            loss_sum = float(np.add.reduce(losses))
        else:
            loss_sum = float(np.dot(sample_weight, losses))
        if isinstance(c, np.ndarray):
            delta *= c[:, None]
        elif c != 1.0:
            delta *= c

        W = self.parameters[: self.n_coefs]
        gemm = ws._gemm if gradients else None
        beta = 0.0
        if gemm is not None and decay:
            # Each layer's gemm adds its gradient onto the decay written here.
            np.multiply(W, decay, out=ws.gradient[: self.n_coefs])
            beta = 1.0

        derivative = DERIVATIVES[self.activation]
        product = _dense_product(X.shape[0])
        for layer in range(len(self.coefs) - 1, 0, -1):
            below = deltas[layer - 1]
            inputs = activations[layer - 1]
            if gradients:
                _weight_gradient(inputs, delta, ws.coef_grads[layer], gemm, beta)
                if not ws._deltas_are_bias_gradients:
                    np.dot(ones, delta, out=ws.intercept_grads[layer])
            product(delta, self.coefs[layer].T, out=below)
            if cross is not None:
                cross[layer] = np.einsum("ij,ij->i", inputs, below)
            delta = derivative(inputs, below)
        if gradients:
            if sp.issparse(X):
                input_gradient = X.T @ delta  # dense, in new memory
                if beta:
                    ws.coef_grads[0] += input_gradient
                else:
                    ws.coef_grads[0][...] = input_gradient
            else:
                _weight_gradient(X, delta, ws.coef_grads[0], gemm, beta)
            if not ws._deltas_are_bias_gradients:
                np.dot(ones, delta, out=ws.intercept_grads[0])
            if decay and gemm is None:
                ws.gradient[: self.n_coefs] += np.multiply(W, decay, out=ws.penalty)
        return loss_sum

    def per_example_gradients(self, X, y, *, alpha=0.0, total_weight=None):
        """Each example's gradient, materialized; see
        :func:`skbatchnet.per_example.per_example_gradients`."""
        from .per_example import per_example_gradients

        return per_example_gradients(self, X, y, alpha=alpha, total_weight=total_weight)

    def per_example_gradient_norms(self, X, y, *, alpha=0.0, total_weight=None):
        """Norms of the per-example gradients, without forming them; see
        :func:`skbatchnet.per_example.per_example_gradient_norms`."""
        from .per_example import per_example_gradient_norms

        return per_example_gradient_norms(
            self, X, y, alpha=alpha, total_weight=total_weight
        )
