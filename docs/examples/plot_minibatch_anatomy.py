"""
===================================================
A minibatch as matrices, and a run with its average
===================================================

Two pictures for the :doc:`/user_guide`. The first shows one backward pass
over a batch as three matrices: the inputs of a layer ``A``, its errors
``D``, and their product ``A^T D``, which is the sum of the batch's
per-example weight gradients. The second shows stochastic gradient descent
at a constant learning rate on a problem with two weights, the cloud its
iterates keep moving in, and the running mean of those iterates
(``average=True``), which settles near the minimum.
"""

# %%
# The batch as matrices
# ---------------------
#
# A network with 4 inputs and 3 hidden units, and a batch of 6 rows. Row
# ``i`` of ``A`` is example ``i``'s input to the first layer, row ``i`` of
# ``D`` its error at the layer, ``d loss_i / d z_i``. Example ``i``'s
# gradient for the layer's weights is the outer product of the two rows;
# ``A^T D`` adds these six outer products in one matrix product.
import matplotlib.pyplot as plt
import numpy as np

from skbatchnet.backprop import Network
from skbatchnet.per_example import per_example_gradients

rng = np.random.RandomState(0)
X = rng.randn(6, 4)
y = X[:, 0] - X[:, 1] + 0.1 * rng.randn(6)
net = Network.initialize([4, 3, 1], activation="tanh", random_state=0)
coef_grads, intercept_grads = per_example_gradients(net, X, y)
A, D = X, intercept_grads[0]  # the first layer's bias gradients are its errors
weight_gradient = A.T @ D

fig, axes = plt.subplots(
    1, 3, figsize=(10, 3.8), gridspec_kw={"width_ratios": [4, 3, 3]}
)
panels = [
    (A, "$A$: inputs\n(6 rows x 4 inputs)", "input", "example"),
    (D, "$D$: errors\n(6 rows x 3 units)", "unit", "example"),
    (
        weight_gradient,
        "$A^T D$: weight gradient\n(4 inputs x 3 units)",
        "unit",
        "input",
    ),
]
for ax, (M, title, xlabel, ylabel) in zip(axes, panels):
    # Each matrix on its own colour scale, with its values written in.
    limit = np.abs(M).max()
    ax.imshow(M, cmap="RdBu_r", vmin=-limit, vmax=limit)
    for (i, j), value in np.ndenumerate(M):
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xticks(range(M.shape[1]))
    ax.set_yticks(range(M.shape[0]))
fig.tight_layout()

# The product is the sum of the per-example outer products ...
assert np.allclose(weight_gradient, coef_grads[0].sum(axis=0))
# ... which is what the backward pass computes for the whole batch.
_, batch_coef_grads, _ = net.batch_gradient(X, y, reduction="sum")
assert np.allclose(weight_gradient, batch_coef_grads[0])

# %%
# A run and its running mean
# --------------------------
#
# Least squares with two weights, ``E(w) = (1/2n) ||X w - y||^2``, and SGD
# with batches of 4 rows at a constant learning rate. The per-example
# gradients do not vanish at the minimum, so the iterates never settle: they
# keep moving in a cloud around it. The running mean
# ``w_bar_k = w_bar_{k-1} + (w_k - w_bar_{k-1}) / k``, the update
# ``average=True`` makes after every step, moves less and less and ends much
# closer to the minimum than the iterates. It starts after the first epoch,
# as ``average=200`` (in samples) would start it, so that the far-off first
# iterates do not weigh on it.
n = 200
X2 = rng.randn(n, 2) * [1.0, 0.5]
y2 = X2 @ [1.0, -1.0] + 0.5 * rng.randn(n)
minimum = np.linalg.lstsq(X2, y2, rcond=None)[0]

w = minimum + [-0.6, 0.5]
learning_rate, batch_size = 0.3, 4
raw, averaged = [w.copy()], []
mean, steps = np.zeros(2), 0
for epoch in range(10):
    order = rng.permutation(n)
    for start in range(0, n, batch_size):
        rows = order[start : start + batch_size]
        gradient = X2[rows].T @ (X2[rows] @ w - y2[rows]) / len(rows)
        w = w - learning_rate * gradient
        raw.append(w.copy())
        if epoch > 0:
            steps += 1
            mean += (w - mean) / steps  # w itself at the first step
            averaged.append(mean.copy())
raw, averaged = np.array(raw), np.array(averaged)

fig, ax = plt.subplots(figsize=(6, 5))
grid = (
    np.linspace(minimum[0] - 0.7, minimum[0] + 0.5, 80),
    np.linspace(minimum[1] - 0.5, minimum[1] + 0.7, 80),
)
W0, W1 = np.meshgrid(*grid)
weights = np.stack([W0.ravel(), W1.ravel()])
E = ((X2 @ weights - y2[:, None]) ** 2).mean(axis=0) / 2
ax.contour(W0, W1, E.reshape(W0.shape), levels=15, colors="0.8")
ax.plot(raw[:, 0], raw[:, 1], "-", lw=0.4, color="tab:blue", label="SGD iterates")
ax.plot(
    averaged[:, 0],
    averaged[:, 1],
    "-",
    lw=2,
    color="tab:orange",
    label="running mean (average=True)",
)
ax.plot(*minimum, "*", ms=14, color="k", label="minimum of E")
ax.set_xlabel("$w_1$")
ax.set_ylabel("$w_2$")
ax.set_xlim(grid[0][0], grid[0][-1])
ax.set_ylim(grid[1][0], grid[1][-1])
ax.set_aspect("equal")
ax.legend(loc="lower left")
ax.set_title("SGD at a constant learning rate, raw and averaged")

# Over the last epoch the iterates stay spread out around the minimum ...
last_epoch = raw[-n // batch_size :]
spread = np.linalg.norm(last_epoch - minimum, axis=1).mean()
# ... while the running mean ends much closer to it.
averaged_error = np.linalg.norm(averaged[-1] - minimum)
print(f"mean distance of the last epoch's iterates: {spread:.3f}")
print(f"distance of the running mean: {averaged_error:.3f}")
assert averaged_error < spread / 3
