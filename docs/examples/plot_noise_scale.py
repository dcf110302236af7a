"""
==================================================
The gradient noise scale as a guide to batch size
==================================================

:func:`~skbatchnet.diagnostics.gradient_noise_scale` computes the simple
noise scale of McCandlish et al. (2018) for the batches training draws,

.. math::

   B_\\text{simple} = \\frac{\\operatorname{tr}(\\Sigma)}
                          {\\lVert G \\rVert^2 + \\operatorname{tr}(\\Sigma)/n},

the batch size at which the noise of a minibatch gradient drawn without
replacement from the :math:`n` training rows is as large as the squared
gradient :math:`\\lVert G \\rVert^2` (:math:`\\Sigma` is the covariance of
the rows' gradients). Below it, a larger batch with a proportionally larger
learning rate does the work of several smaller steps: the same progress for
the same number of samples, in fewer steps. Well above it, the extra samples
in a batch are wasted.

This example follows :math:`B_\\text{simple}` along training on the digits
data, then runs a :class:`~sklearn.model_selection.GridSearchCV` over
``batch_size`` in which every candidate sees the same number of samples, and
sets the two side by side. The :doc:`/advanced` page derives the noise scale.
"""

# %%
# The noise scale along training
# ------------------------------
#
# The diagnostic reads the current weights of a fitted estimator. Fitting
# with ``max_iter=1, 2, ..., k`` from the same ``random_state`` gives the
# weights after each epoch of one training run (each fit replays the same
# first epochs). With ``batch_size='full'`` an epoch is a single step, so
# the first epochs of gradient descent follow the start of training
# closely. A second run, with batches of 32 rows and a small learning rate,
# passes through the same range of losses along another path.
#
# :math:`B_\text{simple}` is plotted against the training loss reached,
# rather than the epoch: the two runs then fall on nearly one curve, because
# the noise scale depends on how far training has got, much more than on
# the path. It is the noise scale of the batches training draws from these
# 1797 rows, so it is at most 1797, which it approaches as the gradient
# vanishes. (``method='population'`` would instead estimate it for examples
# drawn from a population the digits are a sample of; that estimate is
# resolved only well below the number of rows and becomes infinite near a
# minimum.)
import warnings

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import NullFormatter
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import log_loss
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skbatchnet import BatchMLPClassifier
from skbatchnet.diagnostics import gradient_noise_scale

# The fits stop after a fixed number of epochs on purpose.
warnings.filterwarnings("ignore", category=ConvergenceWarning)

X, y = load_digits(return_X_y=True)
n_rows = X.shape[0]


def make_model(**params):
    mlp = BatchMLPClassifier(
        hidden_layer_sizes=(64,),
        solver="sgd",
        tol=0.0,
        n_iter_no_change=np.inf,
        random_state=0,
    )
    return make_pipeline(StandardScaler(), mlp.set_params(**params))


runs = {
    "batch_size='full'": dict(batch_size="full", learning_rate_init=0.3, epochs=12),
    "batch_size=32": dict(batch_size=32, learning_rate_init=0.002, epochs=6),
}
trajectories = {}
for name, run in runs.items():
    print(name)
    losses, noise_scales = [], []
    for epochs in range(1, run["epochs"] + 1):
        model = make_model(
            batch_size=run["batch_size"],
            learning_rate_init=run["learning_rate_init"],
            max_iter=epochs,
        ).fit(X, y)
        b_simple = gradient_noise_scale(model, X, y).b_simple
        losses.append(log_loss(y, model.predict_proba(X)))
        noise_scales.append(b_simple)
        print(f"  epoch {epochs:2d}: loss {losses[-1]:.3f}, B_simple {b_simple:.0f}")
    losses, noise_scales = np.array(losses), np.array(noise_scales)
    assert np.all(noise_scales <= n_rows)
    trajectories[name] = (losses, noise_scales)

# %%
# The search
# ----------
#
# Every candidate trains for exactly 5 epochs, so all of them see the same
# number of samples, and is scored by the log loss on the held-out folds.
# A fair comparison needs a learning rate that grows with the batch:
# with ``gradient_reduction='sum'``, ``learning_rate_init`` is a step size
# per example and the step of a batch grows in proportion to its size (the
# linear scaling rule). Two such rates are searched for every batch size.
search = GridSearchCV(
    make_model(gradient_reduction="sum", max_iter=5),
    {
        "batchmlpclassifier__batch_size": [4, 16, 64, 256, "full"],
        "batchmlpclassifier__learning_rate_init": [3e-4, 1e-3],
    },
    scoring="neg_log_loss",
    cv=3,
)
search.fit(X, y)
results = search.cv_results_
# A fold trains on two thirds of the rows, which 'full' takes in one batch.
rows_per_fold = round(n_rows * 2 / 3)
candidates = [
    rows_per_fold if b == "full" else b
    for b in results["param_batchmlpclassifier__batch_size"]
]
batch_sizes = np.array(sorted(set(candidates)))
mean_score, std_score = [], []
for batch_size in batch_sizes:
    # The best learning rate for this batch size.
    rows = [i for i, b in enumerate(candidates) if b == batch_size]
    i = max(rows, key=lambda row: results["mean_test_score"][row])
    mean_score.append(results["mean_test_score"][i])
    std_score.append(results["std_test_score"][i])
    rate = results["param_batchmlpclassifier__learning_rate_init"][i]
    print(
        f"batch_size={batch_size:5d}: {mean_score[-1]:.3f} +/- {std_score[-1]:.3f} "
        f"(learning_rate_init={rate:g} per example)"
    )
mean_score, std_score = np.array(mean_score), np.array(std_score)
best = search.best_params_["batchmlpclassifier__batch_size"]
print(f"The search picks batch_size={best!r}.")

# %%
# Side by side
# ------------
#
# On the left, :math:`B_\text{simple}` grows by more than an order of
# magnitude as the loss falls: the gradient shrinks faster than its noise.
# On the right, the score of the best learning rate for each batch size,
# with the range of :math:`B_\text{simple}` over the first gradient-descent
# steps shaded.
fig, (ax_noise, ax_search) = plt.subplots(1, 2, figsize=(11, 4.5))
for (name, (losses, noise_scales)), marker in zip(trajectories.items(), "os"):
    ax_noise.plot(losses, noise_scales, marker=marker, label=name)
ax_noise.axhline(n_rows, color="gray", linestyle=":", label="training rows")
ax_noise.set_xscale("log")
ax_noise.set_yscale("log")
ax_noise.invert_xaxis()
ax_noise.set_xticks([0.2, 0.5, 1, 2], labels=["0.2", "0.5", "1", "2"])
ax_noise.xaxis.set_minor_formatter(NullFormatter())
ax_noise.set_xlabel("Training log loss (training proceeds to the right)")
ax_noise.set_ylabel("$B_{simple}$")
ax_noise.set_title("Noise scale along training")
ax_noise.legend()

gd_losses, gd_noise_scales = trajectories["batch_size='full'"]
early = gd_noise_scales[:3]
ax_search.axvspan(early.min(), early.max(), color="tab:orange", alpha=0.2)
ax_search.errorbar(batch_sizes, mean_score, yerr=std_score, marker="o", capsize=3)
ax_search.plot(
    rows_per_fold if best == "full" else best,
    search.best_score_,
    marker="*",
    markersize=15,
    color="tab:red",
    linestyle="none",
    label="picked by the search",
)
ax_search.fill_between(
    [], [], color="tab:orange", alpha=0.2, label="$B_{simple}$, first 3 steps"
)
ax_search.set_xscale("log")
ax_search.set_xlabel("batch_size (5 epochs for every candidate)")
ax_search.set_ylabel("Cross-validated negative log loss")
ax_search.set_title("Grid search at a fixed number of samples")
ax_search.legend(loc="lower left")
fig.tight_layout()

# %%
# What the search picks, and what the noise scale adds
# ----------------------------------------------------
#
# Batch sizes up to about the early noise scale score alike: for them, more
# examples per step buy a proportionally larger step. The batch sizes that
# fall behind are those well above it, which waste samples during the first
# steps, where the noise scale is small and most of the loss reduction
# happens. Later the noise scale is larger, but by then the damage is done.
#
# With the number of samples fixed, a smaller batch is never worse, so the
# search picks a small one; it cannot see that larger batches take fewer,
# cheaper-per-example steps. The noise scale says how far the batch can grow
# before it costs samples: of the order of :math:`B_\text{simple}` at the
# start of training, more later on (which is what schedules that increase
# the batch size during training exploit).
small = mean_score[batch_sizes <= early.max()]
large = mean_score[batch_sizes >= 4 * early.max()]
print(f"B_simple over the first 3 steps: {early.min():.0f} to {early.max():.0f}")
print(f"best score at batch sizes <= {early.max():.0f}: {small.max():.3f}")
print(f"best score at batch sizes >= {4 * early.max():.0f}: {large.max():.3f}")

# The noise scale is resolved at the start and grows as the loss falls.
assert 0 < gd_noise_scales[0] < n_rows / 4
assert gd_noise_scales[-1] > 5 * gd_noise_scales[0]
assert np.all(np.diff(gd_losses) < 0)
# The two runs agree where their losses overlap, within a factor 1.5.
mb_losses, mb_noise_scales = trajectories["batch_size=32"]
overlap = (mb_losses < gd_losses.max()) & (mb_losses > gd_losses.min())
gd_at_mb_losses = np.exp(
    np.interp(
        np.log(mb_losses[overlap]),
        np.log(gd_losses[::-1]),
        np.log(gd_noise_scales[::-1]),
    )
)
assert overlap.sum() >= 3
assert np.all(np.abs(np.log(mb_noise_scales[overlap] / gd_at_mb_losses)) < np.log(1.5))
# The search picks a batch size no larger than the early noise scale ...
assert best != "full" and best <= early.max()
# ... batch sizes up to it are about as good as the best ...
assert small.min() > search.best_score_ - 0.05
# ... and those well above it are clearly worse.
assert large.max() < search.best_score_ - 0.05
