"""
================================================================
An adaptive batch size beside a grid search over ``batch_size``
================================================================

A grid search over ``batch_size`` fits every candidate on every fold: six
batch sizes, six fits per fold. ``batch_size='adaptive'`` fits once per
fold: training starts with batches of 8 rows, tracks the gradient noise
scale :math:`B_\\text{noise}` at every step, and after each epoch sets the
next epoch's batch to a tenth of it (at most doubling or halving per epoch,
and leaving at least 8 steps per epoch). With Adam, the learning rate
follows the batch by the square root of its growth
(``learning_rate_scaling='auto'``).

This example cross-validates both on the digits, with the same folds,
network, solver and number of epochs, and plots the noise scale that the
adaptive fits followed. ``benchmarks/bench_batch_size.py`` runs the same
comparison, repeated, on four data sets; the user guide's "Choosing the
batch size" explains the noise scale and the rule.
"""

# %%
# The grid and the adaptive batch, on the same folds
# ----------------------------------------------------
#
# Every fit trains for exactly 30 epochs (``tol=0`` with a patience of
# ``max_iter``), so the candidates differ in their batch size only. The
# scores are the mean test accuracy over 5 folds with its standard error
# (the standard deviation over the folds divided by the square root of 5).
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skbatchnet import BatchMLPClassifier
from skbatchnet.plotting import NoiseScaleDisplay

# The fits stop after a fixed number of epochs on purpose.
warnings.filterwarnings("ignore", category=ConvergenceWarning)

X, y = load_digits(return_X_y=True)
EPOCHS = 30
folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
model = make_pipeline(
    StandardScaler(),
    BatchMLPClassifier(
        max_iter=EPOCHS, tol=0.0, n_iter_no_change=EPOCHS, random_state=0
    ),
)
grid = [1, 8, 32, 128, 512, "full"]
search = GridSearchCV(
    model, {"batchmlpclassifier__batch_size": grid}, cv=folds, refit=False
)
search.fit(X, y)
adaptive = cross_validate(
    model.set_params(batchmlpclassifier__batch_size="adaptive"),
    X,
    y,
    cv=folds,
    return_estimator=True,
)


def standard_error(scores):
    return np.std(scores, ddof=1) / np.sqrt(len(scores))


results = search.cv_results_
fold_scores = np.array([results[f"split{k}_test_score"] for k in range(5)]).T
n_train = len(X) * 4 // 5
grid_steps = [
    EPOCHS * -(-n_train // (n_train if b == "full" else b)) for b in grid
]  # whole batches per epoch, the last one short
rows = []
for b, scores, seconds, steps in zip(
    grid, fold_scores, results["mean_fit_time"], grid_steps
):
    rows.append((repr(b), scores.mean(), standard_error(scores), seconds, steps))
adaptive_fits = [pipeline[-1] for pipeline in adaptive["estimator"]]
adaptive_steps = np.mean([sum(fit.n_steps_per_epoch_) for fit in adaptive_fits])
rows.append(
    (
        "'adaptive'",
        adaptive["test_score"].mean(),
        standard_error(adaptive["test_score"]),
        adaptive["fit_time"].mean(),
        adaptive_steps,
    )
)
print("batch_size   accuracy          fit s   steps per fit")
for name, score, error, seconds, steps in rows:
    print(f"{name:10}   {score:.4f} ± {error:.4f}   {seconds:5.2f}   {steps:8.0f}")
best = int(np.argmax([row[1] for row in rows[:-1]]))
print(f"The grid's best: batch_size={grid[best]!r}.")
finals = [fit.batch_size_curve_[-1] for fit in adaptive_fits]
print(f"The adaptive fits ended with batches of {min(finals)} to {max(finals)} rows.")

# %%
# Side by side
# ------------
#
# On the left, the grid's accuracy against the batch size, with the adaptive
# fits' accuracy as a band (its mean ± one standard error). On the right, the
# noise scale one adaptive fit tracked, epoch by epoch, and the batch size it
# took. One epoch's estimate is noisy, so the rule reads the last three
# epochs' terms, summed apart and then divided, and aims at a tenth of that
# (dotted, drawn at the epoch it sets). The batch grows from 8 rows as the
# noise scale grows, by at most a factor of 2 per epoch, up to its bound of
# an eighth of the training rows (179 of 1437), and falls back when the
# smoothed noise scale does. Triangles mark epochs whose estimate of the
# squared gradient was not positive (an infinite noise scale: near a
# minimum, the population's gradient is lost in the noise); the axis stops
# at 30,000 rows, above which a few single epochs' estimates reach.
fig, (ax_grid, ax_noise) = plt.subplots(1, 2, figsize=(11, 4.5))
sizes = [n_train if b == "full" else b for b in grid]
ax_grid.errorbar(
    sizes,
    [row[1] for row in rows[:-1]],
    yerr=[row[2] for row in rows[:-1]],
    marker="o",
    capsize=3,
    label="grid search, fixed batch",
)
_, score, error, _, _ = rows[-1]
ax_grid.axhspan(score - error, score + error, color="tab:orange", alpha=0.3)
ax_grid.axhline(score, color="tab:orange", label="batch_size='adaptive'")
ax_grid.set_xscale("log")
ax_grid.set_xlabel(f"batch_size ({EPOCHS} epochs for every fit)")
ax_grid.set_ylabel("Cross-validated accuracy")
ax_grid.set_title("Grid search and the adaptive batch")
ax_grid.legend(loc="lower left")
first = adaptive_fits[0]
NoiseScaleDisplay.from_estimator(first, ax=ax_noise)
g2 = np.array(first.squared_gradient_curve_)
trace = np.array(first.gradient_variance_curve_)
smoothed = []
for epoch in range(len(g2)):
    window = slice(max(0, epoch - 2), epoch + 1)
    g2_sum, trace_sum = g2[window].sum(), trace[window].sum()
    smoothed.append(trace_sum / g2_sum if g2_sum > 0 else np.inf)
target = 0.1 * np.array(smoothed)
ax_noise.plot(
    np.arange(2, len(g2) + 2),
    np.where(np.isinf(target), np.nan, target),
    ":",
    color="C2",
    label="0.1 x smoothed noise scale",
)
ax_noise.set_ylim(3, 3e4)
ax_noise.legend(loc="lower right", fontsize=8)
ax_noise.set_title("Noise scale tracked by one adaptive fit")
fig.tight_layout()

# %%
# What the comparison shows
# -------------------------
#
# At a fixed number of epochs, small batches take many more steps, and the
# largest ones too few: with Adam at its default rate, the full batch takes
# 30 steps in all and falls far behind. The adaptive batch scores with the
# best of the grid after a single fit per fold, and takes a fraction of the
# steps of the small batches that score as well. The grid's six fits per
# fold remain the tool when the held-out score at a fixed budget is the
# question and fits are cheap, as here; the noise scale describes the
# training loss, not the held-out score (see the user guide).
scores = np.array([row[1] for row in rows])
assert scores[-1] >= scores[best] - 0.01  # within a point of the grid's best
assert scores[-1] > scores[grid.index("full")] + 0.1  # far above the full batch
assert adaptive_steps < grid_steps[grid.index(8)] / 3  # fewer steps than batch 8
assert max(finals) <= n_train // 8  # at least 8 steps per epoch
