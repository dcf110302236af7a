"""
==================================================
Averaging weights versus averaging gradients
==================================================

At a constant, large learning rate, stochastic gradient descent does not
settle: its weights keep jumping around a minimum, and so does the test
score of the model they define. There are two ways to average out that
noise:

- average the **weights** along the way (``average=True``): the steps stay
  exactly the same, and the estimator reports the running mean of the
  weights after each step (Polyak--Ruppert averaging);
- average more **gradients** per step (a larger ``batch_size``): each step is
  less noisy, but the trajectory changes and an epoch takes fewer steps.

This example trains on half of the digits data and scores on the other half
after every epoch.
"""

# %%
# Three runs, one epoch at a time
# -------------------------------
#
# The objective has an L2 penalty (``alpha=10``), so it has a minimum at
# finite weights, where the per-example gradients cancel out without
# vanishing: at a constant learning rate, the noise of the steps never dies
# down. (Without the penalty, this network fits the digits training set
# perfectly, every per-example gradient shrinks towards zero, and SGD
# quietens down by itself.) The learning rate, 0.1 with the default momentum
# of 0.9, is about the largest at which this training stays stable.
#
# ``partial_fit`` runs one epoch per call and carries everything over from
# the previous call: the weights, the optimizer's momentum and the running
# average. The raw and averaged runs share ``random_state``, so they take
# identical steps; only the weights they report differ. The third run
# averages 8 times more gradients per step at the same learning rate.
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from skbatchnet import BatchMLPClassifier
from skbatchnet.plotting import LossCurveDisplay

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.5, stratify=y, random_state=0
)
scaler = StandardScaler().fit(X_train)
X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
classes = np.unique(y)

runs = {
    "raw weights, batch_size=16": dict(batch_size=16, average=False),
    "averaged weights, batch_size=16": dict(batch_size=16, average=True),
    "raw weights, batch_size=128": dict(batch_size=128, average=False),
}
n_epochs = 30
models, test_scores = {}, {}
for name, params in runs.items():
    model = BatchMLPClassifier(
        hidden_layer_sizes=(64,),
        solver="sgd",
        learning_rate_init=0.1,
        alpha=10.0,
        random_state=0,
        **params,
    )
    scores = []
    for _ in range(n_epochs):
        model.partial_fit(X_train, y_train, classes=classes)
        scores.append(model.score(X_test, y_test))
    models[name], test_scores[name] = model, np.array(scores)

# %%
# Test score after each epoch
# ---------------------------
#
# The raw weights at batch size 16 score erratically from one epoch to the
# next: each epoch ends wherever the last noisy steps happened to leave
# them. Their running average barely moves, and scores at least as well.
# The larger batch is steadier than the raw weights too, but it starts more
# slowly: its first epoch takes 8 times fewer steps.
#
# On the right, the training loss recorded in ``loss_curve_`` against the
# number of training samples seen. The averaged run's curve is the raw
# run's, exactly: the estimator trains the raw weights and only reports the
# average.
fig, (ax_score, ax_loss) = plt.subplots(1, 2, figsize=(11, 4.5))
epochs = np.arange(1, n_epochs + 1)
for name, scores in test_scores.items():
    ax_score.plot(epochs, scores, marker=".", label=name)
ax_score.set_xlabel("Epochs")
ax_score.set_ylabel("Test accuracy")
ax_score.set_ylim(0.8, 1.0)
ax_score.set_title("Test accuracy, epoch by epoch")
ax_score.legend(loc="lower right")
LossCurveDisplay.from_estimator(
    models, x_axis="samples", ax=ax_loss, log_scale="y", alpha=0.8
)
ax_loss.set_title("Training loss (loss_curve_)")
fig.tight_layout()

# %%
# Over the last 10 epochs
# -----------------------
last = slice(n_epochs - 10, n_epochs)
for name, scores in test_scores.items():
    print(
        f"{name:32s} first epoch {scores[0]:.3f}, last 10 epochs: "
        f"mean {scores[last].mean():.3f}, std {scores[last].std():.3f}"
    )

raw = test_scores["raw weights, batch_size=16"]
averaged = test_scores["averaged weights, batch_size=16"]
larger = test_scores["raw weights, batch_size=128"]
# Same steps: the averaged run records the raw run's losses.
assert (
    models["raw weights, batch_size=16"].loss_curve_
    == models["averaged weights, batch_size=16"].loss_curve_
)
# The averaged weights score far more steadily than the raw ones, and no
# worse. (Over other seeds and splits the mean gain ranges from about -0.01
# to +0.07, and the spread shrinks 6 to 70 times.)
assert averaged[last].std() < raw[last].std() / 3
assert averaged[last].mean() > raw[last].mean() - 0.02
# The larger batch is steadier than the raw weights, but slower off the mark.
assert larger[last].std() < raw[last].std()
assert larger[0] < averaged[0]

# %%
# Which to use
# ------------
#
# Weight averaging costs one vector update per step and leaves the
# trajectory alone, so it combines the many cheap steps of a small batch
# with a stable result. It helps most when the learning rate stays large
# until the end (a constant ``learning_rate``); with a decaying learning
# rate the raw weights settle by themselves. Starting the average later,
# with an integer ``average=k`` (the number of samples after which the mean
# starts), leaves out the early weights, far from any minimum.
#
# A larger batch reduces the noise of every step instead, which also makes
# each step more efficient on the hardware (see :doc:`/performance`), but
# beyond the gradient noise scale it spends samples without making more
# progress per step (see
# :ref:`sphx_glr_auto_examples_plot_noise_scale.py`).
