"""Peak memory of a full-batch fit on 10^6 x 100 float64 rows.

Each library fits in a child process of its own, so each peak resident set
size (RSS) belongs to one fit. Target for skbatchnet: peak RSS below the size
of X plus 1 GiB, since a batch larger than the cache and working-memory
budgets is computed in chunks (see ``Network.chunk_rows``).

Usage: python benchmarks/bench_memory.py [--rows N] [--skip-sklearn]
"""

import argparse
import json
import subprocess
import sys
import time

CHILD = r"""
import json, resource, sys, time, warnings
import numpy as np
warnings.simplefilter("ignore")
library, n_rows, n_features, epochs = sys.argv[1], *map(int, sys.argv[2:5])
rng = np.random.RandomState(0)
X = rng.standard_normal((n_rows, n_features))
y = X[:, :5].sum(axis=1) + 0.1 * rng.standard_normal(n_rows)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
kw = dict(hidden_layer_sizes=(256,), solver="sgd", max_iter=epochs, tol=0,
          n_iter_no_change=10**6, learning_rate_init=1e-3, random_state=0)
if library == "skbatchnet":
    from skbatchnet import BatchMLPRegressor as Model
    kw["batch_size"] = "full"
else:
    from sklearn.neural_network import MLPRegressor as Model
    kw["batch_size"] = n_rows
start = time.perf_counter()
Model(**kw).fit(X, y)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"x_bytes": X.nbytes, "before": before, "peak": peak,
                  "seconds": seconds}))
"""


def run(library, rows, features, epochs):
    out = subprocess.run(
        [sys.executable, "-c", CHILD, library, str(rows), str(features), str(epochs)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10**6)
    parser.add_argument("--features", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--skip-sklearn", action="store_true")
    args = parser.parse_args(argv)
    gib = 2**30
    libraries = ["skbatchnet"] + ([] if args.skip_sklearn else ["scikit-learn"])
    print(
        f"full-batch fit, {args.rows} x {args.features} float64, "
        f"hidden_layer_sizes=(256,), sgd, {args.epochs} epochs\n"
    )
    print("| library | X (GiB) | peak RSS (GiB) | peak - X (GiB) | fit (s) |")
    print("|---|---|---|---|---|")
    results = {}
    start = time.perf_counter()
    for library in libraries:
        r = results[library] = run(library, args.rows, args.features, args.epochs)
        print(
            f"| {library} | {r['x_bytes'] / gib:.2f} | {r['peak'] / gib:.2f} | "
            f"{(r['peak'] - r['x_bytes']) / gib:.2f} | {r['seconds']:.1f} |"
        )
    ours = results["skbatchnet"]
    extra = (ours["peak"] - ours["x_bytes"]) / gib
    print(
        f"\nskbatchnet: peak RSS = X + {extra:.2f} GiB "
        f"(target: below X + 1 GiB: {'ok' if extra < 1 else 'above'})"
    )
    if "scikit-learn" in results:
        theirs = results["scikit-learn"]
        print(
            f"peak RSS ratio scikit-learn / skbatchnet: "
            f"{theirs['peak'] / ours['peak']:.2f}"
        )
    print(f"total wall time: {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
