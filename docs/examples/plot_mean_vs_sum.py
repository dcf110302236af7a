"""
=====================================
Mean or sum of per-example gradients
=====================================

``gradient_reduction`` decides how the gradients of a batch become one step:
``'mean'`` follows their mean, ``'sum'`` their sum, which is :math:`|B|`
times longer for a batch of :math:`|B|` rows. This example shows what that
means for the learning rate, with plain SGD and with Adam, at batch sizes 8,
64 and 512:

- for SGD, ``'sum'`` with learning rate :math:`\\eta / |B|` takes exactly the
  steps of ``'mean'`` with :math:`\\eta`; ``'sum'`` at one fixed rate is the
  linear scaling rule, which has its limits;
- for Adam, which divides each step by the running size of the gradients,
  the reduction hardly matters at all.
"""

# %%
# Data
# ----
#
# The equivalence for SGD needs every batch to have the same number of rows.
# The training set has 1536 rows, which 8, 64 and 512 all divide; with other
# sizes, ``drop_last=True`` gives the same guarantee.
import warnings

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from skbatchnet import BatchMLPClassifier
from skbatchnet.plotting import LossCurveDisplay

# The fits stop after a fixed number of epochs on purpose.
warnings.filterwarnings("ignore", category=ConvergenceWarning)

X, y = load_digits(return_X_y=True)
X_train, _, y_train, _ = train_test_split(
    X, y, train_size=1536, stratify=y, random_state=0
)
X_train = StandardScaler().fit_transform(X_train)
batch_sizes = [8, 64, 512]


def fit(**params):
    model = BatchMLPClassifier(
        hidden_layer_sizes=(64,),
        max_iter=15,
        tol=0.0,
        n_iter_no_change=np.inf,
        random_state=0,
    )
    return model.set_params(**params).fit(X_train, y_train)


def same_weights(a, b):
    return all(
        np.allclose(u, v)
        for u, v in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_)
    )


def plot_pairs(ax, means, sums, title):
    """Loss curves of the 'mean' runs, solid, and of the 'sum' runs, dashed."""
    solid = LossCurveDisplay.from_estimator(
        means, ax=ax, log_scale="y", linewidth=4, alpha=0.4
    )
    dashed = LossCurveDisplay.from_estimator(sums, ax=ax, log_scale="y", linestyle="--")
    for mean_line, sum_line in zip(solid.lines_, dashed.lines_):
        sum_line.set_color(mean_line.get_color())
    # One legend entry per batch size, and a key to the two line styles.
    handles = [
        Line2D([], [], color=line.get_color(), label=f"batch_size={b}")
        for line, b in zip(solid.lines_, batch_sizes)
    ] + [
        Line2D([], [], color="gray", linewidth=4, alpha=0.4, label="'mean'"),
        Line2D([], [], color="gray", linestyle="--", label="'sum'"),
    ]
    ax.set_ylim(bottom=1e-3)
    ax.legend(handles=handles, loc="lower left", fontsize="small")
    ax.set_title(title)


# %%
# SGD: the learning rate absorbs the batch size
# ---------------------------------------------
#
# Each ``'mean'`` run at :math:`\eta = 0.05` is paired with a ``'sum'`` run
# at :math:`0.05 / |B|`. Momentum is off here, but it would not change
# anything: SGD with momentum also sees the gradient only through
# :math:`\eta \hat g`.
eta = 0.05
sgd = dict(solver="sgd", momentum=0.0)
sgd_mean = {
    f"'mean', lr={eta}, B={b}": fit(batch_size=b, learning_rate_init=eta, **sgd)
    for b in batch_sizes
}
sgd_sum = {
    f"'sum', lr={eta}/{b}, B={b}": fit(
        batch_size=b, learning_rate_init=eta / b, gradient_reduction="sum", **sgd
    )
    for b in batch_sizes
}
for (name_mean, a), (name_sum, b) in zip(sgd_mean.items(), sgd_sum.items()):
    print(f"{name_mean} and {name_sum}: same weights: {same_weights(a, b)}")
    assert same_weights(a, b)

# %%
# ``'mean'`` at a fixed rate takes steps of the same length at every batch
# size, so larger batches make less progress per epoch: an epoch at batch
# size 512 is 3 steps. ``'sum'`` at a fixed rate per example instead makes
# the step grow with the batch (the linear scaling rule): here
# :math:`\eta_0 = 0.05 / 8`, so batch size 64 takes the steps of ``'mean'``
# at 0.4 and 512 those of ``'mean'`` at 3.2. Up to a point, that keeps the
# progress per epoch the same with far fewer steps. Beyond it, the steps are
# too long and training breaks down, which is why the rule only holds up to
# a critical batch size (see :ref:`sphx_glr_auto_examples_plot_noise_scale.py`).
eta_per_example = eta / 8
final_loss = {"'mean', fixed lr": [], "'sum', fixed lr per example": []}
for b in batch_sizes:
    final_loss["'mean', fixed lr"].append(sgd_mean[f"'mean', lr={eta}, B={b}"].loss_)
    try:
        scaled = fit(
            batch_size=b,
            learning_rate_init=eta_per_example,
            gradient_reduction="sum",
            **sgd,
        )
        loss = scaled.loss_
    except ValueError:  # the loss became non-finite: training diverged
        loss = np.inf
    final_loss["'sum', fixed lr per example"].append(loss)
for name, losses in final_loss.items():
    print(
        f"{name:30s}", "  ".join(f"B={b}: {v:.3g}" for b, v in zip(batch_sizes, losses))
    )

fig, (ax_pairs, ax_final) = plt.subplots(1, 2, figsize=(11, 4.5))
plot_pairs(ax_pairs, sgd_mean, sgd_sum, "SGD: 'mean' at lr, 'sum' at lr / B")
for (name, losses), marker in zip(final_loss.items(), "os"):
    finite = np.isfinite(losses)
    ax_final.plot(
        np.array(batch_sizes)[finite],
        np.array(losses)[finite],
        marker=marker,
        label=name,
    )
ax_final.set_xscale("log", base=2)
ax_final.set_yscale("log")
ax_final.set_xlabel("batch_size")
ax_final.set_ylabel("Training loss after 15 epochs")
ax_final.set_title("One learning rate for every batch size")
ax_final.legend()
fig.tight_layout()

linear = final_loss["'sum', fixed lr per example"]
constant = final_loss["'mean', fixed lr"]
# With 'mean' at one rate, larger batches fall behind per epoch ...
assert constant[0] < constant[1] < constant[2]
# ... with 'sum' at one rate per example, batch 64 keeps up with batch 8 ...
assert linear[1] < 2 * linear[0]
# ... but at 512 the scaled step is far too long.
assert linear[2] > 10 * linear[1]

# %%
# Adam: the reduction cancels out
# -------------------------------
#
# Adam divides a running mean of the gradients by the square root of a
# running mean of their squares. Multiplying every gradient by :math:`|B|`
# multiplies both by :math:`|B|`, so the step is the same except for the
# small constant :math:`\epsilon` added to the denominator. ``'sum'`` runs
# exactly like ``'mean'`` with :math:`\epsilon / |B|` (the :doc:`/user_guide`
# checks this), and the learning rate needs no change with the batch size.
adam = dict(solver="adam", learning_rate_init=1e-3)
adam_mean = {f"'mean', B={b}": fit(batch_size=b, **adam) for b in batch_sizes}
adam_sum = {
    f"'sum', B={b}": fit(batch_size=b, gradient_reduction="sum", **adam)
    for b in batch_sizes
}

# %%
# The loss curves of each pair coincide. Where the weights differ visibly
# (at batch sizes 64 and 512), it is only for the four pixels that are blank
# in every image: after standardization those inputs are 0, the only
# gradient their weights get is the tiny L2 penalty, of the order of
# :math:`\epsilon` itself, and there the factor :math:`|B|` between the two
# reductions does matter. Those weights multiply zeros, so predictions do not
# change.
blank = X_train.std(axis=0) == 0
print(f"blank pixels: {blank.sum()}")
for batch_size, a, b in zip(batch_sizes, adam_mean.values(), adam_sum.values()):
    curve_gap = np.max(
        np.abs(np.subtract(a.loss_curve_, b.loss_curve_)) / a.loss_curve_
    )
    gap = np.abs(a.coefs_[0] - b.coefs_[0])
    proba_gap = np.abs(a.predict_proba(X_train) - b.predict_proba(X_train)).max()
    print(
        f"batch_size={batch_size}: loss curves within {curve_gap:.1e} "
        f"(relative); largest weight difference {gap[blank].max():.1e} on "
        f"blank pixels, {gap[~blank].max():.1e} elsewhere; probabilities "
        f"within {proba_gap:.1e}"
    )
    assert curve_gap < 1e-3
    assert proba_gap < 1e-3
    assert gap[~blank].max() < 1e-2

fig, ax_adam = plt.subplots(figsize=(6, 4.5))
plot_pairs(ax_adam, adam_mean, adam_sum, "Adam: 'mean' and 'sum' at the same lr")
fig.tight_layout()

# %%
# In short: with SGD, pick the reduction to match how you want to think of
# the learning rate (per batch for ``'mean'``, per example for ``'sum'``)
# and tune the rate for the batch size; with Adam, the choice makes no
# practical difference.
