"""An independent reference for the backprop core, written from the math alone.

Its own forward pass, a hand-written backprop of one example at a time, the
reduction as a loop over examples, and finite differences: none of it calls
the code under test beyond reading a network's parameters.
"""

import numpy as np
from scipy.special import expit, logsumexp

from skbatchnet.backprop import Network

ACTIVATIONS = ["identity", "logistic", "tanh", "relu"]
# (loss, n_outputs): single and multi-output; log_loss always has 3+ classes.
PROBLEMS = [("squared_error", 1), ("squared_error", 3), ("poisson", 1)]
PROBLEMS += [("poisson", 2), ("binary_log_loss", 1), ("binary_log_loss", 3)]
PROBLEMS += [("log_loss", 3), ("log_loss", 4)]
HIDDEN = [5, 4]
N_FEATURES = 3


# ---- Independent reference implementation ----
REF_HIDDEN = {
    "identity": lambda z: z,
    "logistic": lambda z: 1.0 / (1.0 + np.exp(-z)),
    "tanh": np.tanh,
    "relu": lambda z: np.where(z > 0, z, 0.0),
}


REF_HIDDEN_DERIVATIVE = {  # f'(z), written in terms of the pre-activation z
    "identity": np.ones_like,
    "logistic": lambda z: np.exp(-z) / (1.0 + np.exp(-z)) ** 2,
    "tanh": lambda z: 1.0 / np.cosh(z) ** 2,
    "relu": lambda z: (z > 0).astype(float),
}


def ref_softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


REF_OUTPUT = {
    "squared_error": lambda z: z,
    "poisson": np.exp,
    "binary_log_loss": expit,
    "log_loss": ref_softmax,
}


def ref_losses(loss, Y, Z):
    """loss_i from the formulas of the ground rules, Y and Z of shape (n, k)."""
    if loss == "squared_error":
        return 0.5 * ((Y - Z) ** 2).sum(axis=1)
    if loss == "poisson":
        ylogy = np.where(Y > 0, Y * np.log(np.where(Y > 0, Y, 1.0)), 0.0)
        return (np.exp(Z) - Y * Z + ylogy - Y).sum(axis=1)
    if loss == "binary_log_loss":
        return (np.logaddexp(0.0, Z) - Y * Z).sum(axis=1)
    return logsumexp(Z, axis=1) - (Y * Z).sum(axis=1)


def ref_logits(coefs, intercepts, activation, X):
    A = X
    for layer, (W, b) in enumerate(zip(coefs, intercepts)):
        Z = A @ W + b
        A = Z if layer == len(coefs) - 1 else REF_HIDDEN[activation](Z)
    return A


def flatten(coefs, intercepts):
    return np.concatenate([p.ravel() for p in [*coefs, *intercepts]])


def unflatten(theta, coefs, intercepts):
    out, pos = [], 0
    for p in [*coefs, *intercepts]:
        out.append(theta[pos : pos + p.size].reshape(p.shape))
        pos += p.size
    return out[: len(coefs)], out[len(coefs) :]


def ref_objective(theta, net, X, Y, sw, alpha, S, reduction):
    """(1/sum s) sum s_i e_i ('mean') or sum s_i e_i, e_i = loss_i + a/2S ||W||^2"""
    coefs, intercepts = unflatten(theta, net.coefs, net.intercepts)
    losses = ref_losses(net.loss, Y, ref_logits(coefs, intercepts, net.activation, X))
    s = np.ones(X.shape[0]) if sw is None else sw
    e = losses + alpha / (2.0 * S) * sum((W**2).sum() for W in coefs)
    total = (s * e).sum()
    return total / s.sum() if reduction == "mean" else total


def central_differences(f, theta, h=1e-6):
    grad = np.empty_like(theta)
    for j in range(theta.size):
        step = np.zeros_like(theta)
        step[j] = h
        grad[j] = (f(theta + step) - f(theta - step)) / (2.0 * h)
    return grad


def ref_example_gradient(net, x, y, alpha, S):
    """One example's g_i by hand: forward, then backprop with outer products."""
    zs, acts = [], [x]
    for layer, (W, b) in enumerate(zip(net.coefs, net.intercepts)):
        z = acts[-1] @ W + b
        zs.append(z)
        if layer < len(net.coefs) - 1:
            acts.append(REF_HIDDEN[net.activation](z))
    delta = REF_OUTPUT[net.loss](zs[-1]) - y  # d loss_i / d z (canonical link)
    coef_grads, intercept_grads = [None] * len(zs), [None] * len(zs)
    for layer in range(len(zs) - 1, -1, -1):
        W = net.coefs[layer]
        coef_grads[layer] = np.outer(acts[layer], delta) + (alpha / S) * W
        intercept_grads[layer] = delta.copy()
        if layer > 0:
            delta = (W @ delta) * REF_HIDDEN_DERIVATIVE[net.activation](zs[layer - 1])
    return coef_grads, intercept_grads


def ref_reduced_gradient(net, X, Y, sw, alpha, S, reduction):
    """sum_i c_i g_i with c_i = s_i / sum s ('mean') or s_i ('sum')."""
    s = np.ones(len(X)) if sw is None else sw
    c = s / s.sum() if reduction == "mean" else s
    per = [ref_example_gradient(net, X[i], Y[i], alpha, S) for i in range(len(X))]
    layers = range(len(net.coefs))
    coef = [sum(c[i] * per[i][0][k] for i in range(len(X))) for k in layers]
    return coef, [sum(c[i] * per[i][1][k] for i in range(len(X))) for k in layers]


def make_problem(loss, n_outputs, activation="tanh", n=7, seed=0, dtype=np.float64):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, N_FEATURES)
    if loss == "squared_error":
        Y = rng.randn(n, n_outputs)
    elif loss == "poisson":
        Y = rng.poisson(1.5, (n, n_outputs)).astype(float)
        Y[0] = 0.0  # exercise y log y at y = 0
    elif loss == "binary_log_loss":
        Y = rng.randint(0, 2, (n, n_outputs)).astype(float)
    else:
        Y = np.eye(n_outputs)[rng.randint(0, n_outputs, n)]
    sw = rng.uniform(0.2, 2.0, n)
    sw[1] = 0.0  # a zero-weight example must not count
    units = [N_FEATURES, *HIDDEN, n_outputs]
    net = Network.initialize(
        units, activation=activation, loss=loss, random_state=seed + 1, dtype=dtype
    )
    return net, X.astype(dtype), Y, sw


def assert_grads_close(actual, expected, rtol):
    """Element-wise rtol, with an atol scaled to the layer's largest entry."""
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert a.shape == e.shape
        np.testing.assert_allclose(a, e, rtol=rtol, atol=rtol * np.abs(e).max())


def rel_error(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)
