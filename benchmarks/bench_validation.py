"""What a fit's input validation costs, as a fraction of the fit.

A fit validates its input once: the parameters, ``X`` (scikit-learn's
``validate_data``, and before it the sparse structure check,
``_validation.check_sparse_structure``), the targets and their encoding,
the sample weights; the compiled loop's epoch plan checks a CSR matrix's
structure once more. This script times all of that (the estimator's public
training seam, ``training_context().objective(X, y, mode='fit')``, plus the
plan's second structure check) against the fit itself, on dense and on
1%-dense CSR input, at batch 32 and batch 1024.

The cases alternate within each round, so that load on the machine slows
them alike, and each ratio is the median over rounds of validation time /
fit time measured side by side. ``per epoch`` divides by the time of one
epoch instead: the validation is paid once per fit, so the ratio to a whole
fit falls as fits get longer.

Run from the repository root::

    python benchmarks/bench_validation.py            # about 2 minutes on 2 cores
    python benchmarks/bench_validation.py --quick    # smoke test
"""

import argparse
import statistics
import time

import numpy as np
import scipy.sparse as sp
from _report import environment_lines, markdown_table, run_timed

from skbatchnet import BatchMLPClassifier
from skbatchnet._validation import check_sparse_structure

TARGET = 0.01  # validation under 1% of the fit
HEADERS = [
    "input",
    "batch",
    "epochs",
    "validation ms",
    "structure check ms",
    "fit s",
    "validation / fit",
    "validation / epoch",
    "status",
]


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke-test run")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of all cases")
    parser.add_argument("--epochs", type=int, default=10, help="epochs per fit")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--features", type=int, default=500)
    parser.add_argument("--density", type=float, default=0.01, help="of the CSR")
    parser.add_argument(
        "--blas-threads", type=int, default=None, help="BLAS thread limit"
    )
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.epochs, args.rows, args.features = 1, 1, 500, 50
    return args


def make_data(args):
    """Dense and CSR inputs of ten classes, float64 as most users pass them."""
    rng = np.random.RandomState(0)
    dense = rng.randn(args.rows, args.features)
    csr = sp.random(
        args.rows, args.features, density=args.density, format="csr", random_state=0
    )
    weights = rng.randn(args.features, 10)
    labels = {
        "dense": np.argmax(dense @ weights, axis=1),
        "CSR": np.argmax(csr @ weights + 0.01 * rng.randn(args.rows, 10), axis=1),
    }
    return {"dense": dense, "CSR": csr}, labels


def estimator(batch_size, args):
    # tol=0 with a patience beyond max_iter: every fit runs all its epochs.
    return BatchMLPClassifier(
        hidden_layer_sizes=(100,),
        batch_size=batch_size,
        max_iter=args.epochs,
        tol=0.0,
        n_iter_no_change=args.epochs + 1,
        random_state=0,
    )


def time_validation(est, X, y, repeats=5):
    """The fastest of ``repeats`` validations (the seam, plus the plan's
    structure check), and of the two structure checks alone, in seconds."""
    whole, structure = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        data = est.training_context().objective(X, y, mode="fit")
        middle = time.perf_counter()
        check_sparse_structure(data.X)  # the epoch plan's own check
        end = time.perf_counter()
        whole.append(end - start)
        structure.append(end - middle)
        start = time.perf_counter()
        check_sparse_structure(X)  # the one before validate_data, timed alone
        structure[-1] += time.perf_counter() - start
    return min(whole), min(structure)


def run(args):
    for line in environment_lines():
        print(line)
    inputs, labels = make_data(args)
    cases = [(kind, batch) for kind in inputs for batch in (32, 1024)]
    samples = {case: [] for case in cases}
    for round_ in range(args.rounds):
        for kind, batch in cases:
            X, y = inputs[kind], labels[kind]
            validation, structure = time_validation(estimator(batch, args), X, y)
            est = estimator(batch, args)
            start = time.perf_counter()
            est.fit(X, y)
            fit = time.perf_counter() - start
            samples[(kind, batch)].append((validation, structure, fit, est.n_iter_))
        print(f"round {round_ + 1} of {args.rounds} done")
    rows = []
    for (kind, batch), measured in samples.items():
        validation, structure, fit, epochs = zip(*measured)
        ratio = statistics.median(v / f for v, f in zip(validation, fit))
        per_epoch = statistics.median(
            v / (f / n) for v, f, n in zip(validation, fit, epochs)
        )
        rows.append(
            [
                kind,
                batch,
                epochs[0],
                f"{1e3 * statistics.median(validation):.2f}",
                f"{1e3 * statistics.median(structure):.3f}",
                f"{statistics.median(fit):.2f}",
                f"{100 * ratio:.3f}%",
                f"{100 * per_epoch:.2f}%",
                "ok" if ratio < TARGET else "ABOVE 1%",
            ]
        )
    print(markdown_table(HEADERS, rows))


if __name__ == "__main__":
    args = parse_args()
    run_timed(run, args)
