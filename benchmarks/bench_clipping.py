"""Cost of per-example clipping against the same fit without it.

Clipping needs every layer's error of a row before any weight gradient, the
norms ``sum_l ||d_i^l||^2 (||a_i^(l-1)||^2 + 1)``, and one pass scaling the
error rows; the products are the same. This script fits the same estimator
with and without ``max_gradient_norm``, back to back and alternating which
goes first, and prints the median of the per-round ratios clipped/unclipped
with their interquartile range.

Usage: python benchmarks/bench_clipping.py [--rounds 9] [--epochs 3]
"""

import argparse
import statistics
import time
import warnings

import numpy as np
from _report import environment_lines, markdown_table
from threadpoolctl import threadpool_limits

from skbatchnet import BatchMLPClassifier

UNITS = (64, 128, 128, 10)  # the network: 64 inputs, 10 classes


def data(n, dtype):
    rng = np.random.RandomState(0)
    X = rng.standard_normal((n, UNITS[0])).astype(dtype)
    y = rng.randint(0, UNITS[-1], n)
    return X, y


def fit_seconds(X, y, batch, clip, epochs):
    model = BatchMLPClassifier(
        hidden_layer_sizes=UNITS[1:-1],
        solver="sgd",
        batch_size=batch,
        max_iter=epochs,
        tol=0,
        n_iter_no_change=10**6,
        max_gradient_norm=1.0 if clip else None,
        random_state=0,
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y)
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--n", type=int, default=8000)
    parser.add_argument("--batch", type=int, nargs="+", default=[32, 200, 1024])
    parser.add_argument("--blas-threads", type=int, default=None)
    args = parser.parse_args(argv)
    print("\n".join(environment_lines()))
    print(
        f"network {list(UNITS)}, n={args.n}, sgd, {args.epochs} epochs, C=1.0; "
        f"median (IQR) of {args.rounds} per-round ratios clipped / unclipped\n"
    )
    rows = []
    with threadpool_limits(args.blas_threads, user_api="blas"):
        for dtype in (np.float64, np.float32):
            X, y = data(args.n, dtype)
            for batch in args.batch:
                fit_seconds(X, y, batch, True, 1)  # warm up both paths
                fit_seconds(X, y, batch, False, 1)
                ratios = []
                for r in range(args.rounds):
                    order = (True, False) if r % 2 else (False, True)
                    t = {c: fit_seconds(X, y, batch, c, args.epochs) for c in order}
                    ratios.append(t[True] / t[False])
                q1, med, q3 = statistics.quantiles(ratios, n=4)
                rows.append(
                    [np.dtype(dtype).name, batch, f"{med:.3f}", f"{q1:.3f}–{q3:.3f}"]
                )
                print(rows[-1], flush=True)
    print()
    print(markdown_table(["dtype", "batch", "clipped / unclipped", "IQR"], rows))


if __name__ == "__main__":
    main()
