"""Cost of per-example gradient norms against one ordinary batch gradient.

Per-example norms use the outer-product identity (see
``skbatchnet.per_example``): they need the forward pass and the propagated
deltas, but never the per-example gradients themselves. This script times, on
one batch, the ordinary reduced gradient, the norms, and (for contrast) the
materialized per-example gradients, and prints the ratios.

Usage: python benchmarks/bench_per_example.py [--batch 256] [--repeats 30]
"""

import argparse
import statistics
import time

import numpy as np
import scipy.sparse as sp

from skbatchnet.backprop import Network
from skbatchnet.per_example import per_example_gradient_norms, per_example_gradients


def best_time(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args(argv)
    rng = np.random.RandomState(0)
    units = [64, 128, 128, 10]
    net = Network.initialize(units, loss="log_loss", random_state=0)
    X = rng.standard_normal((args.batch, units[0]))
    Y = np.eye(units[-1])[rng.randint(0, units[-1], args.batch)]
    X_sparse = sp.random(
        args.batch, units[0], density=0.1, format="csr", random_state=0
    )
    workspace = net.workspace(args.batch)
    print(
        f"network {units}, batch {args.batch}, alpha=1e-4; "
        f"best (median) of {args.repeats} runs\n"
    )
    print("| input | computation | ms | ratio to batch gradient |")
    print("|---|---|---|---|")
    for name, data in (("dense", X), ("sparse CSR 10%", X_sparse)):
        base, base_median = best_time(
            lambda d=data: net.batch_gradient(d, Y, alpha=1e-4, workspace=workspace),
            args.repeats,
        )
        rows = [("batch gradient (reduced)", base, base_median)]
        norms = best_time(
            lambda d=data: per_example_gradient_norms(net, d, Y, alpha=1e-4),
            args.repeats,
        )
        rows.append(("per-example gradient norms", *norms))
        full = best_time(
            lambda d=data: per_example_gradients(net, d, Y, alpha=1e-4),
            max(3, args.repeats // 10),
        )
        rows.append(("per-example gradients, materialized", *full))
        for label, best, median in rows:
            print(
                f"| {name} | {label} | {best * 1e3:.3f} ({median * 1e3:.3f}) | "
                f"{best / base:.2f} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
