"""
=====================================================
SGD, minibatch and full-batch training side by side
=====================================================

The same network is trained on the digits data with stochastic gradient
descent (``batch_size=1``), minibatches of 32 rows, and gradient descent on
the whole training set (``batch_size='full'``). The loss is plotted twice:
against epochs (passes over the data) and against optimizer steps.

Per epoch, small batches make more progress, because an epoch is 1797 steps
at ``batch_size=1``, 57 at 32, and a single step with the full batch. Per
step, the full batch makes the most progress, because each of its steps
follows the exact gradient. Which is faster in wall-clock time depends on
what a step costs, which grows with the batch but much more slowly than
linearly at small batch sizes (see :doc:`/performance`).
"""

# %%
# Three runs
# ----------
#
# All three use ``solver='sgd'`` with the default momentum (0.9) and run
# exactly 20 epochs (``tol=0`` with ``n_iter_no_change=np.inf`` switches off
# early stopping). The learning rate grows with the batch size, since a
# step that averages more examples is less noisy and can be longer; the
# values were chosen by trying a few on this data.
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skbatchnet import BatchMLPClassifier
from skbatchnet.plotting import LossCurveDisplay

# The fits stop after a fixed number of epochs on purpose.
warnings.filterwarnings("ignore", category=ConvergenceWarning)

X, y = load_digits(return_X_y=True)

learning_rates = {1: 0.001, 32: 0.03, "full": 1.0}
fits = {}
for batch_size, learning_rate in learning_rates.items():
    model = make_pipeline(
        StandardScaler(),
        BatchMLPClassifier(
            hidden_layer_sizes=(64,),
            solver="sgd",
            batch_size=batch_size,
            learning_rate_init=learning_rate,
            max_iter=20,
            tol=0.0,
            n_iter_no_change=np.inf,
            random_state=0,
        ),
    )
    start = time.perf_counter()
    model.fit(X, y)
    elapsed = time.perf_counter() - start
    mlp = model[-1]
    label = f"batch_size={batch_size!r}, learning_rate_init={learning_rate}"
    fits[label] = model
    print(
        f"{label}: final loss {mlp.loss_:.4f} after {mlp.n_iter_} epochs, "
        f"{elapsed:.2f} s"
    )

# %%
# Loss against epochs and against steps
# -------------------------------------
#
# :class:`~skbatchnet.plotting.LossCurveDisplay` reads ``loss_curve_`` from
# the fitted pipelines. With ``x_axis='steps'`` it places each epoch's loss
# at the number of optimizer steps taken so far, which spans four orders of
# magnitude here, so that axis is logarithmic.
fig, (ax_epochs, ax_steps) = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
LossCurveDisplay.from_estimator(fits, x_axis="epochs", ax=ax_epochs, log_scale="y")
LossCurveDisplay.from_estimator(fits, x_axis="steps", ax=ax_steps, log_scale="both")
ax_epochs.set_title("Per epoch, small batches lead")
ax_steps.set_title("Per step, the full batch leads")
ax_steps.get_legend().remove()
fig.tight_layout()

# %%
# The two orderings, checked
# --------------------------
#
# A threshold on the loss turns the curves into two numbers per run: how
# many epochs, and how many steps, it took to get below the threshold.
# Fewer epochs go with smaller batches, fewer steps with larger ones.
#
# Batch 1 and batch 32 follow nearly the same curve per epoch: 32 rows per
# step are still well below the gradient noise scale of this problem (see
# :ref:`sphx_glr_auto_examples_plot_noise_scale.py`), so averaging 32
# gradients loses nothing per example seen, while taking 32 times fewer
# steps. That is why minibatches are the usual choice.
threshold = 0.1
n_rows = X.shape[0]
steps_per_epoch = {1: n_rows, 32: int(np.ceil(n_rows / 32)), "full": 1}
epochs_needed, steps_needed = {}, {}
for batch_size, model in zip(learning_rates, fits.values()):
    curve = np.asarray(model[-1].loss_curve_)
    epochs_needed[batch_size] = int(np.argmax(curve < threshold)) + 1
    steps_needed[batch_size] = epochs_needed[batch_size] * steps_per_epoch[batch_size]
    print(
        f"batch_size={batch_size!r}: loss < {threshold} after "
        f"{epochs_needed[batch_size]} epochs = {steps_needed[batch_size]} steps"
    )

curves = {
    b: np.asarray(m[-1].loss_curve_) for b, m in zip(learning_rates, fits.values())
}
assert all((c < threshold).any() for c in curves.values())
# Fewer epochs with smaller batches, fewer steps with larger ones.
assert max(epochs_needed[1], epochs_needed[32]) < epochs_needed["full"]
assert steps_needed["full"] < steps_needed[32] < steps_needed[1]
# After 5 epochs, the full batch is far behind per epoch ...
assert curves["full"][4] > 2 * max(curves[1][4], curves[32][4])
# ... while batch 1 and batch 32 end within a factor 1.5 of each other.
assert 1 / 1.5 < curves[1][-1] / curves[32][-1] < 1.5
