"""Demo: a grid search over ``batch_size`` x ``gradient_reduction``.

Run ``python -m skbatchnet`` (``--help`` for the options). It cross-validates
``make_pipeline(StandardScaler(), BatchMLPClassifier(...))`` on scikit-learn's
digits data for every combination of ``batch_size`` in ``[1, 16, 64, 'full']``
and ``gradient_reduction`` in ``['mean', 'sum']``, and prints, for each
combination, the mean CV accuracy, the mean fit time, the epochs run and the
number of optimizer steps per fit.

The epochs and steps are read off each fitted CV estimator by extra
"scorers" (a scorer receives the fitted pipeline), so they cost no extra fits:
``steps = n_iter_ * ceil(n_train / batch_size_)``, which is the number of
minibatch updates with ``drop_last=False``.
"""

import argparse
import math
import sys
import time
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from . import BatchMLPClassifier, __version__

BATCH_SIZES = [1, 16, 64, "full"]
REDUCTIONS = ["mean", "sum"]

# Default run: about 25 fits, well under a minute on two cores.
DEFAULTS = {"max_iter": 30, "cv": 3}
# --quick: the same grid, few epochs and two folds (for the tests).
QUICK = {"max_iter": 3, "cv": 2}

HIDDEN_LAYER_SIZES = (64,)
LEARNING_RATE_INIT = 1e-3
RANDOM_STATE = 0

_MLP = "batchmlpclassifier"


def _mlp_and_n_train(pipeline):
    """The fitted MLP of the pipeline and the number of rows it was fitted on."""
    mlp = pipeline.named_steps[_MLP]
    n_train = int(pipeline.named_steps["standardscaler"].n_samples_seen_)
    return mlp, n_train


def _epochs(pipeline, X, y):
    """Scorer returning the epochs run by the fitted MLP (X, y are unused)."""
    mlp, _ = _mlp_and_n_train(pipeline)
    return mlp.n_iter_


def _steps(pipeline, X, y):
    """Scorer returning the optimizer steps of the fit (X, y are unused).

    Each epoch has ``ceil(n_train / batch_size_)`` batches (the last one short,
    ``drop_last=False``) and every batch is one step.
    """
    mlp, n_train = _mlp_and_n_train(pipeline)
    return mlp.n_iter_ * math.ceil(n_train / mlp.batch_size_)


def _parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m skbatchnet",
        description=(
            "Grid search over batch_size x gradient_reduction for a "
            "StandardScaler + BatchMLPClassifier pipeline on scikit-learn's "
            "digits data; prints CV accuracy, fit time, epochs and optimizer "
            "steps for every combination."
        ),
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=(
            f"fast smoke run: max_iter={QUICK['max_iter']}, cv={QUICK['cv']} "
            "(same grid; scores are not meaningful)"
        ),
    )
    parser.add_argument(
        "--max-iter",
        type=int,
        default=None,
        metavar="N",
        help=f"maximum epochs per fit (default {DEFAULTS['max_iter']})",
    )
    parser.add_argument(
        "--cv",
        type=int,
        default=None,
        metavar="K",
        help=f"number of stratified CV folds (default {DEFAULTS['cv']})",
    )
    parser.add_argument(
        "--n-jobs",
        type=int,
        default=1,
        metavar="J",
        help="parallel fits, passed to GridSearchCV (default 1)",
    )
    parser.add_argument(
        "--version", action="version", version=f"skbatchnet {__version__}"
    )
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else DEFAULTS
    if args.max_iter is None:
        args.max_iter = settings["max_iter"]
    if args.cv is None:
        args.cv = settings["cv"]
    if args.max_iter < 1:
        parser.error("--max-iter must be at least 1")
    if args.cv < 2:
        parser.error("--cv must be at least 2")
    return args


def _count(value):
    """An integer count, or a fold mean that is not a whole number."""
    value = float(value)
    return f"{value:,.0f}" if value.is_integer() else f"{value:,.1f}"


def _table(results):
    columns = [
        ("batch_size", ">10"),
        ("reduction", "<9"),
        ("accuracy", ">8"),
        ("+/- sd", ">7"),
        ("fit time [s]", ">12"),
        ("epochs", ">6"),
        ("steps/fit", ">9"),
        ("rank", ">4"),
    ]
    header = "  ".join(f"{name:{spec}}" for name, spec in columns)
    lines = [header, "-" * len(header)]
    for i, params in enumerate(results["params"]):
        row = [
            str(params[f"{_MLP}__batch_size"]),
            params[f"{_MLP}__gradient_reduction"],
            f"{results['mean_test_accuracy'][i]:.4f}",
            f"{results['std_test_accuracy'][i]:.4f}",
            f"{results['mean_fit_time'][i]:.2f}",
            _count(results["mean_test_epochs"][i]),
            _count(results["mean_test_steps"][i]),
            str(results["rank_test_accuracy"][i]),
        ]
        lines.append(
            "  ".join(f"{cell:{spec}}" for cell, (_, spec) in zip(row, columns))
        )
    return "\n".join(lines)


def _describe(params):
    return (
        f"batch_size={params[f'{_MLP}__batch_size']!r}, "
        f"gradient_reduction={params[f'{_MLP}__gradient_reduction']!r}"
    )


def main(argv=None):
    """Run the demo; ``argv`` defaults to ``sys.argv[1:]``. Returns 0."""
    args = _parse_args(argv)
    start = time.perf_counter()

    X, y = load_digits(return_X_y=True)
    pipeline = make_pipeline(
        StandardScaler(),
        BatchMLPClassifier(
            hidden_layer_sizes=HIDDEN_LAYER_SIZES,
            solver="adam",
            learning_rate_init=LEARNING_RATE_INIT,
            max_iter=args.max_iter,
            drop_last=False,
            random_state=RANDOM_STATE,
        ),
    )
    grid = {
        f"{_MLP}__batch_size": BATCH_SIZES,
        f"{_MLP}__gradient_reduction": REDUCTIONS,
    }
    search = GridSearchCV(
        pipeline,
        grid,
        scoring={"accuracy": "accuracy", "epochs": _epochs, "steps": _steps},
        # Only the table and the best parameters are needed: no final refit.
        refit=False,
        cv=args.cv,
        n_jobs=args.n_jobs,
        error_score="raise",
    )

    n_candidates = len(BATCH_SIZES) * len(REDUCTIONS)
    quick = " (--quick)" if args.quick else ""
    print(
        "skbatchnet demo: GridSearchCV over batch_size x gradient_reduction\n"
        f"  data:  digits, {X.shape[0]} samples, {X.shape[1]} features, "
        f"{np.unique(y).size} classes\n"
        f"  cv:    {args.cv}-fold stratified, {n_candidates} candidates, "
        f"{n_candidates * args.cv} fits{quick}\n"
        "  model: StandardScaler + BatchMLPClassifier(\n"
        f"           hidden_layer_sizes={HIDDEN_LAYER_SIZES}, solver='adam', "
        f"learning_rate_init={LEARNING_RATE_INIT:g},\n"
        f"           max_iter={args.max_iter}, random_state={RANDOM_STATE})\n"
        "  note:  'sum' makes each step's gradient batch-size times larger than\n"
        "         'mean'. Adam divides by a running RMS of the gradient, so it is\n"
        "         nearly insensitive to that scale: 'mean' and 'sum' differ only\n"
        "         through epsilon and the short last batch of an epoch (and not\n"
        "         at all for batch_size=1).\n"
        "  columns: means over the CV folds (one BLAS thread per fit); steps/fit\n"
        "  = epochs * ceil(n_train / batch_size_) of each fitted CV model.\n"
    )
    sys.stdout.flush()

    # Silenced here only: with few epochs, most fits stop at max_iter.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        # The matrices are small (at most ~1200 x 64): a multithreaded BLAS
        # gains nothing on them and, on a busy machine, its spinning threads
        # can slow a full-batch fit tenfold. (Parallel workers, --n-jobs > 1,
        # get their own limits from joblib.)
        with threadpool_limits(limits=1, user_api="blas"):
            search.fit(X, y)

    results = search.cv_results_
    print(_table(results))
    print()

    ranks = np.asarray(results["rank_test_accuracy"])
    best = int(np.argmin(ranks))  # the first of the best, as GridSearchCV does
    params = results["params"]
    ties = [params[i] for i in np.flatnonzero(ranks == ranks[best]) if i != best]
    print(
        f"best: {_describe(params[best])} "
        f"(mean CV accuracy {results['mean_test_accuracy'][best]:.4f})"
    )
    for tie in ties:
        print(f"      tied with {_describe(tie)}")
    print(f"total time: {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
