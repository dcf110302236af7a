"""Prediction speed of skbatchnet.BatchMLPClassifier against scikit-learn's MLP.

scikit-learn's MLPClassifier is fitted briefly and its weights are copied into
a BatchMLPClassifier of the same architecture, so both predict with the same
model. predict and predict_proba are then timed on 10^3, 10^4 and 10^5 rows,
in float64 and float32, the two libraries alternating call by call; the table
reports the median time per call and the ratio sklearn time / skbatchnet time,
and checks that both libraries return the same predictions. Only the ratios
measured within one run are meaningful.

Run from the repository root::

    python benchmarks/bench_predict.py            # full run, < 2 minutes
    python benchmarks/bench_predict.py --quick    # smoke test
"""

import argparse
import statistics
import time

import numpy as np
from _report import environment_lines, markdown_table, run_timed
from sklearn.neural_network import MLPClassifier

from skbatchnet import BatchMLPClassifier

N_FEATURES = 64
HIDDEN_LAYER_SIZES = (128, 128)
N_CLASSES = 10
N_TRAIN = 2_000
TRAIN_EPOCHS = 5
# Rows per call -> timed calls per library and method.
FULL_CALLS = {10**3: 50, 10**4: 15, 10**5: 5}
QUICK_CALLS = {10**3: 3, 10**4: 2}
TARGET_ROWS, TARGET_RATIO = 10**5, 1.3
METHODS = ("predict", "predict_proba")
HEADERS = [
    "dtype",
    "rows",
    "method",
    "calls",
    "sklearn ms",
    "skbatchnet ms",
    "ratio",
    "target",
    "status",
    "same output",
]


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke-test run")
    parser.add_argument(
        "--dtype", choices=["float64", "float32", "both"], default="both"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed calls per library, method and size (default: by size)",
    )
    parser.add_argument(
        "--blas-threads",
        type=int,
        default=None,
        help="limit the BLAS thread pools to this many threads (default: no limit)",
    )
    return parser.parse_args()


def fitted_pair(dtype):
    """sklearn's MLPClassifier and a BatchMLPClassifier with the same weights."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((N_TRAIN, N_FEATURES)).astype(dtype)
    y = rng.integers(N_CLASSES, size=N_TRAIN)
    params = {"hidden_layer_sizes": HIDDEN_LAYER_SIZES, "random_state": 0}
    theirs = MLPClassifier(max_iter=TRAIN_EPOCHS, **params).fit(X, y)
    # One epoch sets up the fitted state (classes, output layer); the weights
    # are then replaced by sklearn's.
    ours = BatchMLPClassifier(max_iter=1, **params).fit(X, y)
    ours.coefs_ = [W.astype(dtype, copy=True) for W in theirs.coefs_]
    ours.intercepts_ = [b.astype(dtype, copy=True) for b in theirs.intercepts_]
    return theirs, ours


def time_calls(functions, X, calls):
    """Median seconds per call of each function, calling them in turn.

    Also returns each function's last output.
    """
    times = [[] for _ in functions]
    outputs = [None for _ in functions]
    for _ in range(calls):
        for i, function in enumerate(functions):
            start = time.perf_counter()
            outputs[i] = function(X)
            times[i].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times], outputs


def same_output(method, theirs, ours):
    if method == "predict":
        return np.array_equal(theirs, ours)
    return np.allclose(theirs, ours)


def table_row(dtype, rows, method, calls, sklearn_time, our_time, same):
    """The cells of one row of the results table (see HEADERS)."""
    ratio = sklearn_time / our_time
    if rows == TARGET_ROWS:
        target_cells = [
            f">= {TARGET_RATIO}",
            "ok" if ratio >= TARGET_RATIO else "below",
        ]
    else:
        target_cells = ["-", "-"]
    return [
        dtype,
        f"{rows:.0e}".replace("e+0", "e"),
        method,
        calls,
        f"{1e3 * sklearn_time:.3f}",
        f"{1e3 * our_time:.3f}",
        f"{ratio:.2f}",
        *target_cells,
        "yes" if same else "NO",
    ]


def run(args):
    calls_by_size = QUICK_CALLS if args.quick else FULL_CALLS
    dtypes = ("float64", "float32") if args.dtype == "both" else (args.dtype,)

    print("# skbatchnet prediction benchmark\n")
    for line in environment_lines():
        print(f"- {line}")
    print(
        f"- model: MLPClassifier({HIDDEN_LAYER_SIZES}) fitted for {TRAIN_EPOCHS} "
        f"epochs on {N_TRAIN} rows, {N_FEATURES} features, {N_CLASSES} classes; "
        "its weights copied into a BatchMLPClassifier"
    )
    print("- median time per call, the libraries alternating call by call\n")

    rows = []
    all_same = True
    rng = np.random.default_rng(1)
    X_all = rng.standard_normal((max(calls_by_size), N_FEATURES))
    for dtype in dtypes:
        theirs, ours = fitted_pair(dtype)
        for n_rows, calls in calls_by_size.items():
            X = X_all[:n_rows].astype(dtype)
            calls = args.repeats or calls
            for method in METHODS:
                functions = [getattr(theirs, method), getattr(ours, method)]
                time_calls(functions, X, 1)  # warm up
                (sklearn_time, our_time), outputs = time_calls(functions, X, calls)
                same = same_output(method, *outputs)
                all_same &= same
                rows.append(
                    table_row(
                        dtype, n_rows, method, calls, sklearn_time, our_time, same
                    )
                )

    print("Times in milliseconds per call; ratio = sklearn / skbatchnet.\n")
    print(markdown_table(HEADERS, rows))
    print()
    print(
        "predictions equal (predict: np.array_equal, predict_proba: np.allclose): "
        f"{all_same}"
    )


def main():
    run_timed(run, parse_args())


if __name__ == "__main__":
    main()
