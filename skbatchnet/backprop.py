"""The backprop core: a dense network, its per-example terms, and the reduction.

The objective on a training set with sample weights ``s_i`` and total weight
``S = sum_i s_i`` is::

    E(W, b) = (1/S) sum_i s_i loss_i + (alpha / 2S) ||W||^2

(biases are not penalized). Writing it as ``E = (1/S) sum_i s_i e_i`` with the
per-example term ``e_i = loss_i + (alpha / 2S) ||W||^2`` shows that each
example carries its share of the penalty, so its gradient is::

    g_i = grad(loss_i) + (alpha / S) W.

A minibatch step combines the ``g_i`` of the batch with a *reduction*
(:func:`~skbatchnet.reduction.reduction_coefficients`). For a batch drawn
uniformly at random: ``'unbiased'`` gives
``sum_i s_i grad(loss_i) / E[sum_B s_i] + (alpha / S) W`` (the penalty at
its expectation), an unbiased estimate of ``grad E`` under any weights; ``'sum'`` gives
``sum_i s_i g_i``, an unbiased estimate of ``E[sum_B s_i] grad E`` under any
weights; ``'mean'`` gives ``sum_i s_i g_i / sum_i s_i``, unbiased only when
the weights are equal. Under unequal weights ``'mean'`` is a ratio
estimator whose fixed point depends on the batch size (at batch 1 the
weights cancel); it is exact for the whole set. Because
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
>>> from skbatchnet.per_example import per_example_gradients
>>> per_example = per_example_gradients(net, X, y, alpha=1e-4)
>>> bool(np.allclose(per_example[0][0].mean(axis=0), coef_grads[0]))
True
"""

import math
from itertools import pairwise
from numbers import Real

import numpy as np
from sklearn.utils import check_random_state

from ._activations import ACTIVATIONS
from ._clipping import clip_factors, gradient_squared_norms
from ._extension import squared_norm
from ._losses import LOSSES
from ._validation import check_sparse_structure
from ._workspace import (
    Workspace,
    chunk_rows,
    chunks,
    dense_product,
    input_product,
    parameter_shapes,
    views,
)
from .reduction import REDUCTIONS, reduction_coefficients

__all__ = ["Network", "Workspace", "reduction_coefficients", "REDUCTIONS"]

# Cache budgets of one chunk of rows, in MiB (see Network.chunk_rows). A
# training chunk also carries its deltas and pays some forty numpy calls, so
# its chunks are larger; prediction's are sized for a core's L2 cache, which
# keeps its passes fast when other processes crowd the shared L3.
_CACHE_MIB = 8
_FORWARD_CACHE_MIB = 2


def _float64(a):
    """``a`` in float64, for sums that float32 would round or overflow."""
    return a.astype(np.float64, copy=False)


def _as_2d_target(y, dtype):
    y = np.asarray(y, dtype=dtype)
    return y.reshape(-1, 1) if y.ndim == 1 else y


def check_batch(network, X, y, sample_weight=None, *, structure=True):
    """Check a batch against ``network``; ``y`` as a 2-D array of its dtype.

    Each ValueError names the argument that does not fit. With
    ``structure``, a sparse ``X``'s index arrays are checked too (linear in
    its stored entries), before scipy's slicing and products read them.
    """
    if structure:
        check_sparse_structure(X)
    n_in, n_out = network.coefs[0].shape[0], network.coefs[-1].shape[1]
    shape = getattr(X, "shape", ())
    if len(shape) != 2 or shape[1] != n_in or shape[0] < 1:
        raise ValueError(
            f"X must be a 2-D array of at least one row and {n_in} columns (the "
            f"network's inputs), got shape {shape}."
        )
    Y = _as_2d_target(y, network.dtype)
    if Y.ndim != 2 or Y.shape != (shape[0], n_out):
        raise ValueError(
            f"y must have one row per row of X ({shape[0]}) and {n_out} output(s), "
            f"got shape {np.shape(y)}."
        )
    if sample_weight is not None:
        w = np.asarray(sample_weight)
        if w.shape != (shape[0],):
            raise ValueError(
                f"sample_weight must have one entry per row of X ({shape[0]}), got "
                f"shape {w.shape}."
            )
        if not (np.isfinite(w).all() and (w >= 0).all()):
            raise ValueError(
                "sample_weight must be finite and non-negative; drop the examples "
                "with negative weight or give them weight 0."
            )
    return Y


def _scale_rows(delta, factors):
    """Multiply row ``i`` of ``delta`` by ``factors[i]`` (or all by a scalar)."""
    if isinstance(factors, np.ndarray):
        delta *= factors[:, None]
    elif factors != 1.0:
        delta *= factors


def _check_shapes(coefs, intercepts):
    """Each weight matrix maps the layer below to its bias vector's layer."""
    fan_in = None
    for i, (W, b) in enumerate(zip(coefs, intercepts)):
        W_shape, b_shape = np.shape(W), np.shape(b)
        if len(W_shape) != 2 or (fan_in is not None and W_shape[0] != fan_in):
            raise ValueError(
                f"coefs[{i}] must be a 2-D array of shape ({fan_in or 'fan_in'}, "
                f"fan_out) that takes the previous layer's outputs, got {W_shape}."
            )
        if b_shape != (W_shape[1],):
            raise ValueError(
                f"intercepts[{i}] must have shape ({W_shape[1]},) to match "
                f"coefs[{i}] of shape {W_shape}, got {b_shape}."
            )
        fan_in = W_shape[1]


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
        _check_shapes(coefs, intercepts)
        dtype = np.result_type(*coefs)
        shapes = [np.shape(W) for W in coefs] + [np.shape(b) for b in intercepts]
        # math.prod: numpy's prod costs microseconds per tiny tuple, and
        # prediction builds a network on every call.
        self.n_coefs = sum(math.prod(shape) for shape in shapes[: len(coefs)])
        self.parameters = np.empty(sum(math.prod(sh) for sh in shapes), dtype)
        blocks = views(self.parameters, shapes)
        for block, value in zip(blocks, list(coefs) + list(intercepts)):
            block[...] = value
        self.coefs = blocks[: len(coefs)]
        self.intercepts = blocks[len(coefs) :]
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
        what fits in ``cache_mib`` MiB: past a few thousand rows matrix
        products do not get faster, while activations that no longer fit in
        cache make every elementwise pass stream from main memory.
        """
        units, dtype = self.layer_units, self.dtype
        return min(chunk_rows(units, dtype), chunk_rows(units, dtype, cache_mib))

    def workspace(self, n_samples):
        """Buffers for batches of up to ``n_samples`` rows (:class:`Workspace`).

        A batch larger than :meth:`chunk_rows` is computed in chunks, so its
        buffers never exceed one chunk.
        """
        return Workspace(
            self.layer_units, min(n_samples, self.chunk_rows()), self.dtype
        )

    def unpack(self, vector):
        """Views of a parameter-shaped ``vector`` as ``(coefs, intercepts)``.

        Examples
        --------
        >>> net = Network.initialize([3, 2, 1], random_state=0)
        >>> coefs, intercepts = net.unpack(net.parameters)
        >>> [c.shape for c in coefs], [b.shape for b in intercepts]
        ([(3, 2), (2, 1)], [(2,), (1,)])
        """
        coef_shapes, intercept_shapes = parameter_shapes(self.layer_units)
        blocks = views(vector, coef_shapes + intercept_shapes)
        return blocks[: len(coef_shapes)], blocks[len(coef_shapes) :]

    def _forward(self, X, activations, product):
        """Fill ``activations`` (one buffer per layer after the input).

        Hidden layers hold ``f(Z)``; the last buffer holds the raw output
        pre-activation ``Z``, from which losses are computed stably.
        """
        hidden = ACTIVATIONS[self.activation].function
        # Only the input can be sparse (or of another dtype); every later
        # product is dense, within the network's dtype.
        input_product(X, self.coefs[0], activations[0])
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
        check_sparse_structure(X)
        n = X.shape[0]
        out = np.empty((n, self.layer_units[-1]), self.dtype)
        chunk = self.chunk_rows(_FORWARD_CACHE_MIB)
        activations = [
            np.empty((min(n, chunk), u), self.dtype) for u in self.layer_units[1:-1]
        ]
        product = dense_product(min(n, chunk), self.dtype)
        for rows in chunks(n, chunk):
            buffers = [A[: rows.stop - rows.start] for A in activations]
            self._forward(X[rows], buffers + [out[rows]], product)
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
        return squared_norm(self.parameters[: self.n_coefs])

    def objective(self, X, y, sample_weight=None, *, alpha=0.0):
        """The objective ``E`` on the data given (taken as the whole set).

        ``E = (1/S) sum_i s_i loss_i + (alpha / 2S) ||W||^2`` with
        ``S = sum_i s_i``.
        """
        losses = self.per_example_loss(X, y)
        if sample_weight is None:
            total, data = losses.shape[0], losses.mean()
        else:
            # In float64: float32 weights can sum past float32's range.
            total = np.sum(sample_weight, dtype=np.float64)
            data = np.dot(_float64(sample_weight), _float64(losses)) / total
        return float(data) + 0.5 * alpha * self.penalty() / float(total)

    def gradient(
        self,
        X,
        y,
        coefficients,
        *,
        sample_weight=None,
        alpha=0.0,
        total_weight=None,
        workspace=None,
        max_norm=None,
        check_input=True,
    ):
        """The reduced gradient ``sum_i c_i g_i`` of one batch, and its loss.

        ``g_i = grad(loss_i) + (alpha / S) W`` is example ``i``'s term and
        ``c_i`` its coefficient, from
        :func:`~skbatchnet.reduction.reduction_coefficients` (possibly
        scaled). The penalty's part is ``sum_i c_i (alpha / S) W``, that is
        ``(alpha / S) (sum_i c_i) W``.

        A batch with more rows than :meth:`chunk_rows` is computed chunk by
        chunk and the chunks' gradients summed: the reduced gradient is a sum
        over examples, so the result equals the one-pass computation up to
        rounding while memory stays bounded by ``working_memory``.

        Parameters
        ----------
        X : {ndarray, sparse matrix} of shape (n_samples, n_features)
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        coefficients : Coefficients
            ``(c, sum_i c_i)``, as :func:`~skbatchnet.reduction.reduction_coefficients`
            returns them; ``c`` is a scalar or one value per row.
        sample_weight : ndarray of shape (n_samples,), default=None
            The weights ``s_i``, for the loss (the gradient sees them only
            through ``c``).
        alpha : float, default=0.0
            L2 penalty strength of the objective.
        total_weight : float, default=None
            ``S``, the total sample weight of the *whole training set*, which
            sets each example's share of the penalty. Defaults to this batch's
            total weight, i.e. the batch is taken as the whole set.
        workspace : Workspace, default=None
            Buffers to write into; by default they are freshly allocated.
        max_norm : float, default=None
            Clip each example's loss gradient to this norm before the
            reduction (:meth:`backward`); the penalty is not clipped. The
            workspace's ``n_clipped`` then counts the rows clipped.
        check_input : bool, default=True
            Check a sparse ``X``'s index arrays, in time linear in its stored
            entries. The trainers pass False for the batches they slice, at
            every step, from data checked once when it came in; do the same
            only for rows of a matrix already checked.

        Returns
        -------
        loss : float
            The batch estimate of ``E``: the weighted mean of ``loss_i`` over
            the batch plus ``(alpha / 2S) ||W||^2``, whatever the coefficients.
        gradient : ndarray of shape (n_parameters,)
            Laid out like :attr:`parameters` (:meth:`unpack` splits it); the
            workspace's buffer when one is given.
        """
        Y = check_batch(self, X, y, sample_weight, structure=check_input)
        n = X.shape[0]
        ws = workspace if workspace is not None else self.workspace(n)
        c, c_total = coefficients
        weight = (
            n
            if sample_weight is None
            else float(np.sum(sample_weight, dtype=np.float64))
        )
        if total_weight is None:
            total_weight = weight
        decay = alpha * c_total / float(total_weight) if alpha else 0.0

        if n <= ws.n_samples:
            loss_sum = self.backward(
                X,
                Y,
                workspace=ws,
                coefficients=c,
                sample_weight=sample_weight,
                decay=decay,
                max_norm=max_norm,
            )
        else:
            total = ws.accumulator()
            loss_sum, clipped = 0.0, 0
            for rows in chunks(n, ws.n_samples):
                first = rows.start == 0
                loss_sum += self.backward(
                    X[rows],
                    Y[rows],
                    workspace=ws,
                    coefficients=c if isinstance(c, Real) else c[rows],
                    sample_weight=None
                    if sample_weight is None
                    else sample_weight[rows],
                    decay=decay if first else 0.0,  # the penalty counts once
                    max_norm=max_norm,
                )
                clipped += ws.n_clipped
                if first:
                    total[...] = ws.gradient
                else:
                    total += ws.gradient
            ws.gradient[...] = total
            ws.n_clipped = clipped
        # A batch without weight has no data term (and, for 'sum', no step).
        loss = loss_sum / weight if weight else 0.0
        if alpha:
            loss += 0.5 * alpha * self.penalty() / float(total_weight)
        return loss, ws.gradient

    def batch_gradient(
        self,
        X,
        y,
        sample_weight=None,
        *,
        alpha=0.0,
        total_weight=None,
        reduction="mean",
        expected_weight=None,
        workspace=None,
    ):
        """Loss and reduced gradient of one batch, per layer.

        The coefficients of ``reduction`` (see
        :func:`~skbatchnet.reduction.reduction_coefficients`) passed to
        :meth:`gradient`, whose result is split per layer. With
        ``reduction='mean'`` and the batch being the whole set this is
        ``grad E``.

        Parameters
        ----------
        X : {ndarray, sparse matrix} of shape (n_samples, n_features)
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : ndarray of shape (n_samples,), default=None
        alpha, total_weight, workspace
            As in :meth:`gradient`.
        reduction : {'mean', 'sum', 'unbiased'}, default='mean'
        expected_weight : float, default=None
            The expected weight of a batch like this one, read by
            ``'unbiased'`` (see
            :func:`~skbatchnet.reduction.reduction_coefficients`); None takes
            the batch as the whole set.

        Returns
        -------
        loss : float
            As in :meth:`gradient`.
        coef_grads : list of ndarray
            Same shapes as ``coefs``.
        intercept_grads : list of ndarray
            Same shapes as ``intercepts``.
        """
        check_batch(self, X, y, sample_weight)
        ws = workspace if workspace is not None else self.workspace(X.shape[0])
        c = reduction_coefficients(
            sample_weight, X.shape[0], reduction, expected_weight=expected_weight
        )
        loss, _ = self.gradient(
            X,
            y,
            c,
            sample_weight=sample_weight,
            alpha=alpha,
            total_weight=total_weight,
            workspace=ws,
            check_input=False,  # checked above
        )
        return loss, ws.coef_grads, ws.intercept_grads

    def backward(
        self,
        X,
        Y,
        *,
        workspace,
        coefficients=1.0,
        sample_weight=None,
        decay=0.0,
        gradients=True,
        cross=None,
        max_norm=None,
    ):
        """Forward and backward pass of one chunk, written into ``workspace``.

        Fills the deltas (``d loss_i / d z`` of every layer, row ``i`` scaled
        by ``c_i``, and by ``min(1, C / ||grad(loss_i)||)`` when clipping)
        and, with ``gradients``, ``workspace.gradient`` with
        ``sum_i c_i clip_i grad(loss_i) + decay * W`` (biases not decayed).

        Parameters
        ----------
        X : {ndarray, sparse matrix} of shape (n_rows, n_features)
            At most ``workspace.n_samples`` rows. A sparse ``X`` is taken as
            well formed, as scipy's products take it: this is the step's
            kernel, and the callers check their data once
            (:meth:`gradient`, the per-example tools).
        Y : ndarray of shape (n_rows, n_outputs)
            Targets in the network's dtype.
        workspace : Workspace
        coefficients : float or ndarray of shape (n_rows,), default=1.0
            ``c_i``; 1 leaves each example's delta its own.
        sample_weight : ndarray of shape (n_rows,), default=None
            Weights of the returned loss sum.
        decay : float, default=0.0
            Factor of the weights added to their gradient.
        gradients : bool, default=True
            Form the parameter gradients; without, only the deltas.
        cross : list, default=None
            One entry per layer; for every layer above the input it receives
            ``a_i^T W d_i`` row by row. ``W d_i`` is the error sent to the
            layer below before the activation's derivative is applied, so this
            costs a row-wise dot product, not a matrix product.
        max_norm : float, default=None
            ``C``: clip each example's loss gradient, every layer flattened,
            to this norm (:mod:`skbatchnet._clipping`); the decay is not
            clipped. ``workspace.n_clipped`` then counts the rows shrunk.

        Returns
        -------
        loss_sum : float
            ``sum_i s_i loss_i`` over the rows.
        """
        ws = workspace
        activations, deltas = ws.rows(X.shape[0])
        Z = self._forward(X, activations, ws.product)
        # Canonical link: d loss_i / d z_i = f(z_i) - y_i, written with the
        # losses in one go. Scaling row i by c_i here carries the reduction
        # through every layer's matrix product; clipping needs every layer's
        # unscaled error first, and scales them all afterwards.
        losses = LOSSES[self.loss].error(Y, Z, deltas[-1])
        # Summed in float64, as the compiled loop sums them: in float32 the
        # sum of 10^5 losses loses digits, and weighted ones can overflow.
        if sample_weight is None:
            loss_sum = float(np.add.reduce(losses, dtype=np.float64))
        else:
            loss_sum = float(np.dot(_float64(sample_weight), _float64(losses)))
        if max_norm is None:
            _scale_rows(deltas[-1], coefficients)

        derivative = ACTIVATIONS[self.activation].derivative
        for layer in range(len(self.coefs) - 1, 0, -1):
            below, inputs = deltas[layer - 1], activations[layer - 1]
            ws.product(deltas[layer], self.coefs[layer].T, out=below)
            if cross is not None:
                cross[layer] = np.einsum("ij,ij->i", inputs, below)
            derivative(inputs, below)
        ws.n_clipped = 0
        if max_norm is not None:
            squared = gradient_squared_norms([X, *activations[:-1]], deltas)
            factors, ws.n_clipped = clip_factors(squared, max_norm)
            factors = (factors * coefficients).astype(self.dtype, copy=False)
            for delta in deltas:
                _scale_rows(delta, factors)
        if gradients:
            self._parameter_gradients(X, activations, deltas, ws, decay)
        return loss_sum

    def _parameter_gradients(self, X, activations, deltas, ws, decay):
        """``A.T delta`` and the column sums of ``delta``, layer by layer,
        plus ``decay * W``, into ``ws.gradient``."""
        W = self.parameters[: self.n_coefs]
        # Where the kernel adds in place, each layer's product is added onto
        # the decay written first; otherwise the decay is added last.
        decay_first = bool(decay and ws.decay_in_place)
        if decay_first:
            np.multiply(W, decay, out=ws.gradient[: self.n_coefs])
        for layer in range(len(self.coefs) - 1, -1, -1):
            inputs = X if layer == 0 else activations[layer - 1]
            ws.weight_gradient(inputs, deltas[layer], ws.coef_grads[layer], decay_first)
            ws.bias_gradient(layer, deltas[layer])
        if decay and not decay_first:
            ws.gradient[: self.n_coefs] += np.multiply(W, decay, out=ws.penalty)
