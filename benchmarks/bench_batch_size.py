"""batch_size='adaptive' against a grid search over batch_size, cross-validated.

Issue 27's acceptance benchmark. On each data set, a repeated 5-fold
cross-validation scores every batch size of the grid ``1, 8, 32, 128, 512,
'full'``, the fixed ``'auto'`` batch of 200 rows (a reference: scikit-learn's
default is none of the grid's sizes) and ``batch_size='adaptive'``, on the
same folds. Every fit has the same settings but ``batch_size``:

- a Pipeline of a StandardScaler and the estimator; for the regression data
  the target is standardized too (a ``TransformedTargetRegressor``): the
  diabetes target runs from 25 to 346, and squared errors of that size would
  make the first epochs a search for the target's mean at any batch size;
- ``hidden_layer_sizes=(100,)``, ReLU, ``alpha=1e-4``, Adam at
  ``learning_rate_init=1e-3`` (the estimator's defaults) and
  ``learning_rate_scaling='auto'``: a fixed batch keeps its rate, the
  adaptive batch multiplies it by ``sqrt(b / 8)`` in an epoch of ``b`` rows
  (its first batch has 8), the rule the library states for Adam
  (``--learning-rate-scaling`` sets another rule, for every fit);
- the same number of epochs, ``max_iter``, for every fit of a data set, all
  of them run: ``tol=0``, ``n_iter_no_change=max_iter``, no early stopping
  (the script checks ``n_iter_``);
- ``random_state`` = the repeat's number, the same for every candidate of a
  split, so that the candidates of a split differ in their batch size only.

Within each split the candidates are fitted one after the other, in an order
that rotates from split to split, so that a slow spell of the machine falls
on all of them alike; only ratios of times measured in one run mean
anything. Fit time is the wall time of ``fit`` (scaling included), as
``cross_validate`` reports it.

Reported per data set and candidate: the mean test score over the
``5 x repeats`` folds (accuracy; R^2 for regression) with its standard
error, the sample standard deviation of the fold scores over the square root
of their number (the folds share training rows, so this understates the
spread between independent data sets, alike for every candidate); the mean
fit time; the optimizer steps of a fit (mean of the sum of
``n_steps_per_epoch_``); the training loss of the last epoch (mean). For
the adaptive fits, the batch sizes they took (``batch_size_curve_``) and,
where a target is missed, the noise-scale curve they followed.

The targets (the issue's), on every data set, with "best" the grid's
candidate of the highest mean score:

1. adaptive's mean score is below the best's by at most 2 of the best's
   standard errors, and by at most 0.01;
2. adaptive's mean score is below the fixed 200's by at most 2 of its
   standard errors;
3. adaptive's mean fit time is at most 1.5 times the best's.

The paired difference (adaptive minus the other candidate, fold by fold,
with its own standard error) is printed beside them, for information.

Data sets: scikit-learn's digits (1797 rows, 10 classes), breast cancer (569
rows, 2 classes), diabetes (442 rows, regression), and a synthetic
classification set of 100,000 rows (``make_classification``: 20 features,
10 of them informative and 5 their linear combinations, 3 classes of 2
Gaussian clusters each at the corners of a hypercube, 2% of the labels
flipped): no linear boundary separates its classes, the flipped labels keep
the per-example gradients apart however well the network fits, so the
noise scale stays finite, and its 80,000 training rows per fold are what
large batches are for, where batch 1 is slowest.

The budget: 30 epochs on the three small sets, 10 on the synthetic one (its
80,000 training rows make 10 epochs 800,000 examples, more than 30 epochs of
the three small sets together), for every candidate of a data set; batch 1
there is 800,000 steps per fit (its time per fit is printed). The search is
repeated 10 times (10 x 5 folds, 50 fits per candidate and data set).

Run from the repository root::

    python benchmarks/bench_batch_size.py --threads 1         # about 8 minutes
    python benchmarks/bench_batch_size.py --datasets digits diabetes
    python benchmarks/bench_batch_size.py --quick             # smoke test
    python benchmarks/bench_batch_size.py --datasets digits \\
        --learning-rate-scaling linear
    python benchmarks/bench_batch_size.py --save docs/_data/bench_batch_size.csv
"""

import argparse
import csv
import datetime
import math
import statistics
import time
import warnings
from dataclasses import dataclass

import numpy as np
from _report import environment_lines, markdown_table
from sklearn.compose import TransformedTargetRegressor
from sklearn.datasets import (
    load_breast_cancer,
    load_diabetes,
    load_digits,
    make_classification,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import RepeatedKFold, RepeatedStratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from skbatchnet import BatchMLPClassifier, BatchMLPRegressor

GRID = (1, 8, 32, 128, 512, "full")
AUTO = 200  # scikit-learn's 'auto' on sets of 200 rows or more
CANDIDATES = (*GRID, AUTO, "adaptive")
N_SPLITS = 5
SCORE_GAP = 0.01  # target 1: at most this far below the best, as well
N_ERRORS = 2  # targets 1 and 2: within this many standard errors
TIME_RATIO = 1.5  # target 3: adaptive's fit time over the best's, at most


@dataclass(frozen=True)
class DataSet:
    name: str
    task: str  # 'classification' or 'regression'
    epochs: int  # max_iter of every fit
    repeats: int  # of the 5-fold split
    load: object  # () -> X, y


def synthetic(n_samples=100_000):
    return make_classification(
        n_samples=n_samples,
        n_features=20,
        n_informative=10,
        n_redundant=5,
        n_classes=3,
        n_clusters_per_class=2,
        flip_y=0.02,
        random_state=0,
    )


DATASETS = {
    "digits": DataSet(
        "digits", "classification", 30, 10, lambda: load_digits(return_X_y=True)
    ),
    "breast_cancer": DataSet(
        "breast_cancer",
        "classification",
        30,
        10,
        lambda: load_breast_cancer(return_X_y=True),
    ),
    "diabetes": DataSet(
        "diabetes", "regression", 30, 10, lambda: load_diabetes(return_X_y=True)
    ),
    "synthetic": DataSet("synthetic", "classification", 10, 10, synthetic),
}
QUICK = {
    "digits": DataSet(
        "digits",
        "classification",
        2,
        1,
        lambda: tuple(a[:300] for a in load_digits(return_X_y=True)),
    ),
    "breast_cancer": DataSet(
        "breast_cancer",
        "classification",
        2,
        1,
        lambda: tuple(a[:200] for a in load_breast_cancer(return_X_y=True)),
    ),
    "diabetes": DataSet(
        "diabetes",
        "regression",
        2,
        1,
        lambda: tuple(a[:200] for a in load_diabetes(return_X_y=True)),
    ),
    "synthetic": DataSet(
        "synthetic", "classification", 1, 1, lambda: synthetic(n_samples=2_000)
    ),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke-test run")
    parser.add_argument(
        "--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS)
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="repeats of the 5-fold split"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="limit BLAS and OpenMP (the loop's threads) to this many threads "
        "(default: no limit)",
    )
    parser.add_argument(
        "--learning-rate-scaling",
        choices=["auto", "linear", "sqrt"],
        default="auto",
        help="the rate rule of every fit (only the adaptive batch changes size)",
    )
    parser.add_argument("--save", metavar="PATH", help="write the summary as CSV")
    return parser.parse_args(argv)


def make_model(dataset, batch_size, seed, scaling="auto"):
    """The pipeline every candidate of ``dataset`` fits, at ``batch_size``."""
    mlp_class = (
        BatchMLPClassifier if dataset.task == "classification" else BatchMLPRegressor
    )
    mlp = mlp_class(
        hidden_layer_sizes=(100,),
        solver="adam",
        learning_rate_init=1e-3,
        learning_rate_scaling=scaling,
        batch_size=batch_size,
        max_iter=dataset.epochs,
        tol=0.0,
        n_iter_no_change=dataset.epochs,
        early_stopping=False,
        random_state=seed,
    )
    model = make_pipeline(StandardScaler(), mlp)
    if dataset.task == "regression":
        model = TransformedTargetRegressor(
            regressor=model, transformer=StandardScaler()
        )
    return model


def fitted_mlp(model):
    pipeline = (
        model.regressor_ if isinstance(model, TransformedTargetRegressor) else model
    )
    return pipeline[-1]


@dataclass
class Fit:
    score: float
    seconds: float
    steps: int
    loss: float
    batch_sizes: list
    noise_scale: list | None
    squared_gradient: list | None
    gradient_variance: list | None


def run_fit(dataset, candidate, seed, X, y, train, test, scaling):
    model = make_model(dataset, candidate, seed, scaling)
    start = time.perf_counter()
    model.fit(X[train], y[train])
    seconds = time.perf_counter() - start
    mlp = fitted_mlp(model)
    if mlp.n_iter_ != dataset.epochs:
        raise RuntimeError(
            f"{dataset.name}, batch_size={candidate!r}: {mlp.n_iter_} epochs, "
            f"not {dataset.epochs}: the fits must all run the same budget"
        )
    return Fit(
        score=model.score(X[test], y[test]),
        seconds=seconds,
        steps=int(sum(mlp.n_steps_per_epoch_)),
        loss=float(mlp.loss_curve_[-1]),
        batch_sizes=list(mlp.batch_size_curve_),
        noise_scale=mlp.noise_scale_curve_,
        squared_gradient=mlp.squared_gradient_curve_,
        gradient_variance=mlp.gradient_variance_curve_,
    )


def mean_se(values):
    values = list(values)
    if len(values) < 2:
        return statistics.fmean(values), math.nan
    return statistics.fmean(values), statistics.stdev(values) / math.sqrt(len(values))


def label(candidate, n_train):
    if candidate == "full":
        return f"'full' ({n_train})"
    if candidate == "adaptive":
        return "'adaptive'"
    text = str(candidate)
    if candidate == AUTO:
        text += " ('auto', reference)"
    if candidate >= n_train:
        text += f" (= full, {n_train})"
    return text


def cross_validate_all(dataset, X, y, repeats, scaling):
    splitter_class = (
        RepeatedStratifiedKFold if dataset.task == "classification" else RepeatedKFold
    )
    splitter = splitter_class(n_splits=N_SPLITS, n_repeats=repeats, random_state=0)
    fits = {candidate: [] for candidate in CANDIDATES}
    splits = list(splitter.split(X, y))
    start = time.perf_counter()
    for number, (train, test) in enumerate(splits):
        seed = number // N_SPLITS  # the repeat: every candidate of a split alike
        order = (
            CANDIDATES[number % len(CANDIDATES) :]
            + CANDIDATES[: number % len(CANDIDATES)]
        )
        for candidate in order:
            fit = run_fit(dataset, candidate, seed, X, y, train, test, scaling)
            fits[candidate].append(fit)
        print(
            f"  split {number + 1}/{len(splits)} done "
            f"({time.perf_counter() - start:.0f} s)",
            flush=True,
        )
    return fits, len(splits[0][0])


def summarize(dataset, fits, n_train):
    """Print the data set's tables and verdicts; return the CSV rows."""
    rows, summary = [], {}
    for candidate in CANDIDATES:
        runs = fits[candidate]
        score, se = mean_se(f.score for f in runs)
        seconds = statistics.fmean(f.seconds for f in runs)
        steps = statistics.fmean(f.steps for f in runs)
        loss = statistics.fmean(f.loss for f in runs)
        summary[candidate] = (score, se, seconds, steps, loss)
        rows.append(
            [
                label(candidate, n_train),
                f"{score:.4f} ± {se:.4f}",
                f"{seconds:.3f}",
                f"{steps:,.0f}",
                f"{loss:.4f}",
            ]
        )
    metric = "accuracy" if dataset.task == "classification" else "R^2"
    print()
    print(
        markdown_table(
            [
                "batch_size",
                f"{metric} (mean ± SE)",
                "fit s (mean)",
                "steps per fit",
                "last training loss",
            ],
            rows,
        )
    )
    best = max(GRID, key=lambda c: summary[c][0])
    adaptive = summary["adaptive"]

    def paired(other):
        return mean_se(a.score - o.score for a, o in zip(fits["adaptive"], fits[other]))

    gap_best = summary[best][0] - adaptive[0]
    allowed_best = min(N_ERRORS * summary[best][1], SCORE_GAP)
    gap_auto = summary[AUTO][0] - adaptive[0]
    allowed_auto = N_ERRORS * summary[AUTO][1]
    time_ratio = adaptive[2] / summary[best][2]
    verdicts = [
        (
            f"score within {N_ERRORS} SE (and {SCORE_GAP}) of the best, "
            f"batch_size={best!r}",
            f"{-gap_best:+.4f} (allowed -{allowed_best:.4f}); paired "
            f"{paired(best)[0]:+.4f} ± {paired(best)[1]:.4f}",
            gap_best <= allowed_best,
        ),
        (
            f"no worse than the fixed {AUTO} within {N_ERRORS} SE",
            f"{-gap_auto:+.4f} (allowed -{allowed_auto:.4f}); paired "
            f"{paired(AUTO)[0]:+.4f} ± {paired(AUTO)[1]:.4f}",
            gap_auto <= allowed_auto,
        ),
        (
            f"fit time at most {TIME_RATIO} x the best's",
            f"{adaptive[2]:.3f} s / {summary[best][2]:.3f} s = {time_ratio:.2f}",
            time_ratio <= TIME_RATIO,
        ),
    ]
    print()
    print(
        markdown_table(
            ["target (adaptive)", "measured: adaptive - other", "verdict"],
            [[what, value, "PASS" if ok else "FAIL"] for what, value, ok in verdicts],
        )
    )
    trajectory(fits["adaptive"], show_noise=not all(ok for _, _, ok in verdicts))
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    finals = [f.batch_sizes[-1] for f in fits["adaptive"]]
    return [
        {
            "date": date,
            "dataset": dataset.name,
            "metric": metric,
            "n_train": n_train,
            "epochs": dataset.epochs,
            "fits": len(fits[candidate]),
            "batch_size": candidate,
            "mean_score": round(summary[candidate][0], 4),
            "stderr": round(summary[candidate][1], 4),
            "fit_seconds": round(summary[candidate][2], 4),
            "steps": round(summary[candidate][3]),
            "best": candidate == best,
            "median_final_batch": statistics.median(finals)
            if candidate == "adaptive"
            else "",
            "verdicts": " ".join("PASS" if ok else "FAIL" for _, _, ok in verdicts)
            if candidate == "adaptive"
            else "",
        }
        for candidate in CANDIDATES
    ]


def per_epoch_median(curves):
    values = np.array(curves, dtype=float)
    with warnings.catch_warnings():
        # An epoch no fit estimated (batch 1 only) is all NaN.
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(values, axis=0)


def trajectory(runs, *, show_noise):
    """The adaptive fits' batch sizes, and with ``show_noise`` their noise
    scale: medians over the fits, epoch by epoch."""
    finals = [f.batch_sizes[-1] for f in runs]
    largest = [max(f.batch_sizes) for f in runs]
    print()
    print(
        f"adaptive: final batch size median {statistics.median(finals):g} "
        f"(range {min(finals)} to {max(finals)}), largest median "
        f"{statistics.median(largest):g}; batch size per epoch, median over fits:"
    )
    sizes = per_epoch_median([f.batch_sizes for f in runs])
    print("  " + " ".join(f"{s:g}" for s in sizes))
    if not show_noise:
        return
    noise = per_epoch_median([f.noise_scale for f in runs])
    g2 = per_epoch_median([f.squared_gradient for f in runs])
    trace = per_epoch_median([f.gradient_variance for f in runs])
    infinite = np.mean([np.isinf(f.noise_scale) for f in runs], axis=0)
    print("a target was missed: the noise scale the adaptive fits followed, per epoch")
    print("(medians over the fits; 'inf share': fits whose estimate was inf)")
    print()
    print(
        markdown_table(
            ["epoch", "batch", "B_noise", "inf share", "|G|^2", "tr(Sigma)"],
            [
                [
                    e + 1,
                    f"{sizes[e]:g}",
                    f"{noise[e]:.4g}",
                    f"{infinite[e]:.2f}",
                    f"{g2[e]:.4g}",
                    f"{trace[e]:.4g}",
                ]
                for e in range(len(sizes))
            ],
        )
    )


def run(args):
    datasets = QUICK if args.quick else DATASETS
    print("\n".join(environment_lines()))
    print(
        f"threads: {args.threads or 'no limit'}; candidates {CANDIDATES}; "
        f"{N_SPLITS}-fold CV repeated; adam, learning_rate_init=1e-3, "
        f"learning_rate_scaling={args.learning_rate_scaling!r}, hidden (100,), all "
        "epochs run"
    )
    all_rows = []
    start = time.perf_counter()
    for name in args.datasets:
        dataset = datasets[name]
        repeats = args.repeats or dataset.repeats
        X, y = dataset.load()
        print()
        print(
            f"## {name}: {X.shape[0]} rows, {X.shape[1]} features, {dataset.task}, "
            f"{dataset.epochs} epochs per fit, {N_SPLITS}-fold x {repeats} repeats",
            flush=True,
        )
        began = time.perf_counter()
        fits, n_train = cross_validate_all(
            dataset, X, y, repeats, args.learning_rate_scaling
        )
        seconds = [f.seconds for f in fits[1]]
        print(
            f"batch 1: {dataset.epochs} epochs x {n_train} rows = "
            f"{fits[1][0].steps:,} steps per fit, {statistics.fmean(seconds):.1f} s "
            f"per fit, {sum(seconds):.0f} s over its {len(seconds)} fits; "
            f"the data set took {time.perf_counter() - began:.0f} s"
        )
        all_rows += summarize(dataset, fits, n_train)
    if args.save:
        with open(args.save, "w", newline="", encoding="utf-8") as file:
            writer = csv.DictWriter(file, fieldnames=list(all_rows[0]))
            writer.writeheader()
            writer.writerows(all_rows)
        print(f"\nwrote {args.save}")
    print(f"\ntotal wall time: {time.perf_counter() - start:.1f} s")


def main(argv=None):
    args = parse_args(argv)
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    with threadpool_limits(limits=args.threads):
        run(args)


if __name__ == "__main__":
    main()
