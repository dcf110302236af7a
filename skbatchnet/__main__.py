"""Demo: a grid search over ``batch_size`` x ``gradient_reduction``.

Run ``python -m skbatchnet`` (``--help`` for the options). For each data set
it cross-validates (``cross_validate``, candidate by candidate) a pipeline for
every combination of ``batch_size`` in ``[1, 16, 64, 'full']`` and
``gradient_reduction`` in ``['mean', 'sum']``, trained by plain SGD:

- digits (classification): ``StandardScaler`` + ``BatchMLPClassifier``,
  scored by accuracy;
- diabetes (regression): ``StandardScaler`` + ``BatchMLPRegressor``, the
  regressor wrapped in a ``TransformedTargetRegressor`` that standardizes the
  target (the raw target is in the hundreds), scored by R^2 on the original
  target.

``'mean'`` steps along the mean of the batch's per-example gradients at
``learning_rate_init``; ``'sum'`` steps along their sum at one per-example
rate for every batch size, ``learning_rate_init / 16`` (the rate per example
of ``'mean'`` at batch 16). Its step therefore grows with the batch: the
linear learning-rate scaling rule, built in. At batch 16 the two take the
same steps; below, ``'sum'`` steps less far, above, farther. A candidate whose
training diverges is listed as diverged, with the reason.

Each candidate's row of the results table (mean CV score, mean fit time,
epochs and optimizer steps per fit) is printed as soon as its folds are done,
then the best candidate. The epochs and steps are read off each fitted CV
estimator by extra "scorers" (a scorer receives the fitted pipeline), so they
cost no extra fits (the steps are those each fit recorded,
``n_steps_per_epoch_``).

Finally, when matplotlib is installed, one model per batch size is refitted
on all of each data set and their loss curves, against the number of training
samples seen, are saved to a PNG (one panel per data set).
"""

import argparse
import os
import sys
import time
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata
from sklearn.base import clone, is_classifier
from sklearn.compose import TransformedTargetRegressor
from sklearn.datasets import load_diabetes, load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import ParameterGrid, check_cv, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from . import BatchMLPClassifier, BatchMLPRegressor, __version__
from ._base import final_estimator

BATCH_SIZES = [1, 16, 64, "full"]
REDUCTIONS = ["mean", "sum"]
DATASETS = ("digits", "diabetes")

# Default run: 48 CV fits and 8 refits, about a minute on two cores.
DEFAULTS = {"max_iter": 30, "cv": 3}
# --quick: the same grids, few epochs and two folds (for the tests).
QUICK = {"max_iter": 3, "cv": 2}

HIDDEN_LAYER_SIZES = (64,)
# Of 'mean'; 'sum' runs at this rate divided by SUM_RATE_BATCH.
LEARNING_RATE_INIT = 0.01
# 'sum' runs at the per-example rate that 'mean' has at this batch size.
SUM_RATE_BATCH = 16
RANDOM_STATE = 0
# The loss curves are refitted with 'mean' ('sum' at the paired rate draws
# nearly the same curves).
PLOT_REDUCTION = "mean"
DEFAULT_OUTPUT = "loss_curves.png"
# Formats the figure can be saved in, checked before any fit.
OUTPUT_FORMATS = (".png", ".pdf", ".svg")


# -- the data sets -----------------------------------------------------------------


@dataclass(frozen=True)
class _Task:
    name: str
    X: np.ndarray
    y: np.ndarray
    pipeline: object
    prefix: str  # parameter prefix of the MLP inside the pipeline
    score_name: str  # column header and "mean CV <score_name>"
    scoring: str  # scikit-learn scorer name
    description: str
    loss_label: str  # y-axis label of the loss-curve panel
    log_loss: bool  # logarithmic y-axis for the loss curves


def _mlp_params(max_iter):
    return dict(
        hidden_layer_sizes=HIDDEN_LAYER_SIZES,
        solver="sgd",
        learning_rate_init=LEARNING_RATE_INIT,
        max_iter=max_iter,
        drop_last=False,
        random_state=RANDOM_STATE,
    )


def _digits(max_iter):
    X, y = load_digits(return_X_y=True)
    return _Task(
        name="digits",
        X=X,
        y=y,
        pipeline=make_pipeline(
            StandardScaler(), BatchMLPClassifier(**_mlp_params(max_iter))
        ),
        prefix="batchmlpclassifier__",
        score_name="accuracy",
        scoring="accuracy",
        description=(
            f"classification, {X.shape[0]} samples, {X.shape[1]} features, "
            f"{np.unique(y).size} classes\n"
            "  model: StandardScaler + BatchMLPClassifier, scored by accuracy"
        ),
        loss_label="Training loss (log loss)",
        # From about 2 down to 1e-5: several decades.
        log_loss=True,
    )


def _diabetes(max_iter):
    X, y = load_diabetes(return_X_y=True)
    regressor = TransformedTargetRegressor(
        regressor=BatchMLPRegressor(**_mlp_params(max_iter)),
        transformer=StandardScaler(),
    )
    return _Task(
        name="diabetes",
        X=X,
        y=y,
        pipeline=make_pipeline(StandardScaler(), regressor),
        prefix="transformedtargetregressor__regressor__",
        score_name="R^2",
        scoring="r2",
        description=(
            f"regression, {X.shape[0]} samples, {X.shape[1]} features, target "
            f"{y.min():.0f} to {y.max():.0f}\n"
            "  model: StandardScaler + TransformedTargetRegressor(BatchMLPRegressor,\n"
            "         transformer=StandardScaler()): the MLP fits the standardized\n"
            "         target; R^2 is scored on the original one"
        ),
        loss_label="Training loss (squared error, standardized target)",
        log_loss=False,
    )


_LOADERS = {"digits": _digits, "diabetes": _diabetes}


# -- reading the fitted CV estimators ------------------------------------------------


def _fitted_mlp(pipeline):
    """The fitted MLP at the end of the pipeline (unwrapping the target transform)."""
    final, _ = final_estimator(pipeline)
    return getattr(final, "regressor_", final)


def _epochs(pipeline, X, y):
    """Scorer returning the epochs run by the fitted MLP (X, y are unused)."""
    return _fitted_mlp(pipeline).n_iter_


def _steps(pipeline, X, y):
    """Scorer returning the optimizer steps of the fit (X, y are unused)."""
    return sum(_fitted_mlp(pipeline).n_steps_per_epoch_)


# -- command line ----------------------------------------------------------------------


_DESCRIPTION = """\
Cross-validates MLP pipelines trained by SGD over a grid of batch_size x
gradient_reduction on scikit-learn's digits (classification,
BatchMLPClassifier) and diabetes (regression, BatchMLPRegressor) data:
prints, per data set, the mean CV score, fit time, epochs and optimizer steps
of every combination, then plots the loss curves of one model per batch size
(needs matplotlib)."""


_OUTPUT = """\
image file (.png, .pdf or .svg) for the loss curves (default ./loss_curves.png);
written only when matplotlib is installed"""


def _parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m skbatchnet", description=_DESCRIPTION
    )
    parser.add_argument(
        "--dataset",
        choices=[*DATASETS, "both"],
        default="both",
        help="data set(s) to run (default both)",
    )
    parser.add_argument(
        "--output", default=DEFAULT_OUTPUT, metavar="PATH", help=_OUTPUT
    )
    parser.add_argument(
        "--n-jobs",
        type=int,
        default=1,
        metavar="J",
        help="parallel CV fits of a candidate, passed to cross_validate (default 1)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=(
            f"fast smoke run: max_iter={QUICK['max_iter']}, cv={QUICK['cv']} "
            "(same grids; scores are not meaningful)"
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
        help=(
            f"number of CV folds (default {DEFAULTS['cv']}; stratified for "
            "digits, unshuffled KFold for diabetes)"
        ),
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
    if args.n_jobs == 0:
        parser.error("--n-jobs must not be 0")
    args.output = os.fspath(args.output)
    directory = os.path.dirname(os.path.abspath(args.output))
    # Fail now rather than after the grid search.
    if not os.path.isdir(directory):
        parser.error(f"--output: directory {directory!r} does not exist")
    if os.path.splitext(args.output)[1].lower() not in OUTPUT_FORMATS:
        parser.error(
            f"--output: {args.output!r} must end in one of {', '.join(OUTPUT_FORMATS)}"
        )
    args.datasets = list(DATASETS) if args.dataset == "both" else [args.dataset]
    return args


def _have_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


# -- the results table -----------------------------------------------------------------


def _count(value):
    """An integer count, or a fold mean that is not a whole number."""
    value = float(value)
    return f"{value:,.0f}" if value.is_integer() else f"{value:,.1f}"


def _columns(score_name):
    return [
        ("batch_size", ">10"),
        ("reduction", "<9"),
        (score_name, ">8"),
        ("+/- sd", ">7"),
        ("fit time [s]", ">12"),
        ("epochs", ">6"),
        ("steps/fit", ">9"),
    ]


def _format_row(cells, columns):
    return "  ".join(f"{cell:{spec}}" for cell, (_, spec) in zip(cells, columns))


def _describe(params):
    return ", ".join(f"{k}={params[k]!r}" for k in ("batch_size", "gradient_reduction"))


def _learning_rate(params):
    """``learning_rate_init`` of a candidate: 'sum' runs at the per-example rate."""
    if params["gradient_reduction"] == "mean":
        return LEARNING_RATE_INIT
    return LEARNING_RATE_INIT / SUM_RATE_BATCH


def _reason(error):
    """Where a fit diverged, from its error; any other error is raised again."""
    # "... Training diverged: <where>, at learning rate <r>. To fix, ..."
    message = str(error)
    if "Training diverged: " not in message:
        raise error
    return "diverged: " + message.split("Training diverged: ")[1].split(". ")[0]


def _evaluate(task, params, cv, n_jobs):
    """Cross-validate one candidate; the fold means of its scores and fit time.

    A candidate whose training diverges gives ``{"diverged": reason}``.
    """
    pipeline = clone(task.pipeline).set_params(
        **{task.prefix + key: value for key, value in params.items()}
    )
    try:
        results = cross_validate(
            pipeline,
            task.X,
            task.y,
            cv=cv,
            scoring={"score": task.scoring, "epochs": _epochs, "steps": _steps},
            n_jobs=n_jobs,
            error_score="raise",
        )
    except ValueError as error:
        return {"diverged": _reason(error)}
    return {
        "score": float(np.mean(results["test_score"])),
        "sd": float(np.std(results["test_score"])),
        "fit_time": float(np.mean(results["fit_time"])),
        "epochs": float(np.mean(results["test_epochs"])),
        "steps": float(np.mean(results["test_steps"])),
    }


def _row(params, result):
    """The cells of a candidate's row of the table."""
    cells = [str(params["batch_size"]), params["gradient_reduction"]]
    if "diverged" in result:
        return cells + ["diverged"]
    return cells + [
        f"{result['score']:.4f}",
        f"{result['sd']:.4f}",
        f"{result['fit_time']:.2f}",
        _count(result["epochs"]),
        _count(result["steps"]),
    ]


def _grid_search(task, args):
    """Print a row per candidate as its CV is done, then the best candidate."""
    cv = check_cv(args.cv, task.y, classifier=is_classifier(task.pipeline))
    grid = {"batch_size": BATCH_SIZES, "gradient_reduction": REDUCTIONS}
    candidates = [
        {**params, "learning_rate_init": _learning_rate(params)}
        for params in ParameterGrid(grid)
    ]
    print(
        f"== {task.name}: {task.description}\n"
        f"  cv:    {args.cv}-fold {type(cv).__name__}, {len(candidates)} "
        f"candidates, {len(candidates) * args.cv} fits\n"
    )
    columns = _columns(task.score_name)
    header = "  ".join(f"{name:{spec}}" for name, spec in columns)
    print(header)
    print("-" * len(header))
    sys.stdout.flush()

    start = time.perf_counter()
    scores = []
    for params in candidates:
        result = _evaluate(task, params, cv, args.n_jobs)
        scores.append(result.get("score", -np.inf))
        print(_format_row(_row(params, result), columns).rstrip(), flush=True)
        if "diverged" in result:
            print(f"{'':>10}  {result['diverged']}", flush=True)

    if not np.isfinite(scores).any():
        print("\nbest: none, every candidate diverged")
        return
    # Ranked as GridSearchCV ranks: ties share the best rank, and the first
    # of the best is "best".
    ranks = rankdata(-np.asarray(scores), method="min")
    best = int(np.argmin(ranks))
    print(
        f"\nbest: {_describe(candidates[best])} "
        f"(mean CV {task.score_name} {scores[best]:.4f})"
    )
    for i in np.flatnonzero(ranks == ranks[best]):
        if i != best:
            print(f"      tied with {_describe(candidates[i])}")
    print(f"{task.name} done in {time.perf_counter() - start:.1f} s\n", flush=True)


# -- the loss curves -------------------------------------------------------------------


def _refit_per_batch_size(task):
    """One pipeline per batch size, fitted on all of the data set."""
    fits = []
    for batch_size in BATCH_SIZES:
        params = {"batch_size": batch_size, "gradient_reduction": PLOT_REDUCTION}
        pipeline = clone(task.pipeline).set_params(
            **{task.prefix + key: value for key, value in params.items()}
        )
        try:
            fits.append(_fitted_mlp(pipeline.fit(task.X, task.y)))
        except ValueError as error:
            print(f"  {task.name}, {_describe(params)}: not plotted, {_reason(error)}")
    return fits


def _plot_loss_curves(tasks, fitted, args):
    # No pyplot figure manager: the Figure draws straight to the file, whatever
    # the backend (and without a display).
    from matplotlib.figure import Figure

    from .plotting import LossCurveDisplay

    figure = Figure(figsize=(6.4 * len(tasks), 5.2), layout="constrained")
    axes = np.atleast_1d(figure.subplots(1, len(tasks)))
    for ax, task, mlps in zip(axes, tasks, fitted):
        if not mlps:  # every fit diverged
            continue
        LossCurveDisplay.from_estimator(
            mlps, x_axis="samples", ax=ax, log_scale="y" if task.log_loss else False
        )
        ax.set_title(f"{task.name}: {type(mlps[0]).__name__}, {len(task.y)} samples")
        ax.set_ylabel(task.loss_label)
        ax.grid(True, alpha=0.3)
    figure.suptitle(
        "Training loss against samples seen (a point per epoch)\n"
        "one fit per batch_size on the whole data set, "
        f"gradient_reduction={PLOT_REDUCTION!r}\n"
        f"hidden_layer_sizes={HIDDEN_LAYER_SIZES}, SGD, "
        f"learning_rate_init={LEARNING_RATE_INIT:g}, max_iter={args.max_iter}"
    )
    figure.savefig(args.output, dpi=100)


def _loss_curves(tasks, args):
    if not _have_matplotlib():
        print(
            "matplotlib not installed: pip install 'skbatchnet[plot]' to get "
            f"{os.path.basename(args.output)}"
        )
        return
    print(
        "loss curves: refitting one model per batch_size on each data set", flush=True
    )
    start = time.perf_counter()
    fitted = [_refit_per_batch_size(task) for task in tasks]
    _plot_loss_curves(tasks, fitted, args)
    print(f"wrote {args.output} ({time.perf_counter() - start:.1f} s)", flush=True)


_HEADER = """\
skbatchnet demo: grid search over batch_size x gradient_reduction{quick}
  grid:  {grid}
  MLP:   hidden_layer_sizes={hidden}, solver='sgd', max_iter={max_iter},
         random_state={seed}
  rates: 'mean' steps at learning_rate_init={rate:g}; 'sum' adds up the
         batch's gradients and runs at learning_rate_init={rate:g} / {sum_batch}
         at every batch size, so its step grows with the batch (the linear
         scaling rule): the steps of 'mean' at batch size {sum_batch}, shorter
         below it, longer above.
  rows:  printed as each candidate's CV is done; means over the folds
         (one BLAS thread per fit); steps/fit = the optimizer steps each
         fitted CV model recorded; a diverged candidate is listed with the
         reason.
"""

# -- main ------------------------------------------------------------------------------


def main(argv=None):
    """Run the demo; ``argv`` defaults to ``sys.argv[1:]``. Returns 0."""
    args = _parse_args(argv)
    start = time.perf_counter()
    tasks = [_LOADERS[name](args.max_iter) for name in args.datasets]

    quick = " (--quick: scores are not meaningful)" if args.quick else ""
    header = _HEADER.format(
        quick=quick,
        grid=f"batch_size in {BATCH_SIZES} x gradient_reduction in {REDUCTIONS}",
        hidden=HIDDEN_LAYER_SIZES,
        max_iter=args.max_iter,
        seed=RANDOM_STATE,
        rate=LEARNING_RATE_INIT,
        sum_batch=SUM_RATE_BATCH,
    )
    print(header, flush=True)

    # Silenced here only: with few epochs, most fits stop at max_iter.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        # The matrices are small (at most ~1800 x 64): a multithreaded BLAS
        # gains nothing on them and, on a busy machine, its spinning threads
        # can slow a full-batch fit tenfold. (Parallel workers, --n-jobs > 1,
        # get their own limits from joblib.)
        with threadpool_limits(limits=1, user_api="blas"):
            for task in tasks:
                _grid_search(task, args)
            _loss_curves(tasks, args)

    print(f"total time: {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
