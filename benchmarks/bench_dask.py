"""DataParallel on a LocalCluster: step time, strong scaling, traffic, client memory.

Trains ``BatchMLPRegressor`` wrapped in ``skbatchnet.dask.DataParallel``
(``strategy='gradient'``) on ``rows x 64`` float64 data generated on the
workers, with 1 and then 2 worker processes of one thread each; every worker
runs BLAS on one thread, so the comparison is one core against two.

Each configuration is measured in a process of its own, with its own cluster
and data, and the two alternate round after round. With both clusters
kept alive side by side (each holding its gigabyte of blocks), steps took up
to half as long again as in a process of their own, which hid the second
worker's gain.

Per configuration it reports the median time of a step (a batch's gradient
reduced across the workers and the optimizer step) at a tiny batch (the
round-trip overhead), at ``batch_size=65536`` and at ``'full'``, and of an
L-BFGS evaluation (loss and gradient on all rows); the strong scaling
``time(1 worker) / time(2 workers)``; the bytes the client sends and receives
per step; and the batch size above which a step is compute-bound (where the
rows' compute time equals the overhead). Last, the client's resident memory
is sampled in a thread during a fit on ``--memory-rows x 64`` (1 GB at the
default), and its growth is compared with the size of X.

Usage: python benchmarks/bench_dask.py [--rows N] [--memory-rows N] [--quick]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import warnings

os.environ.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")

import dask.array as da  # noqa: E402
import distributed  # noqa: E402
import psutil  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from _report import environment_lines, markdown_table  # noqa: E402

from skbatchnet import BatchMLPRegressor  # noqa: E402
from skbatchnet._dask_data import ClusterData  # noqa: E402
from skbatchnet.dask import DataParallel  # noqa: E402

FEATURES = 64


def make_data(rows, chunk_rows):
    """X and y built from a graph on the workers (never on the client)."""
    rng = da.random.RandomState(0)
    X = rng.standard_normal((rows, FEATURES), chunks=(chunk_rows, FEATURES))
    y = X[:, :5].sum(axis=1) + 0.1 * rng.standard_normal(rows, chunks=chunk_rows)
    return X, y


class StepTimer:
    """Wall time of every ``ClusterData.gradient`` call: one step each."""

    def __init__(self):
        self.times = []
        self._original = ClusterData.gradient

    def __enter__(self):
        timer, original = self, self._original

        def timed(self, *args, **kwargs):
            start = time.perf_counter()
            out = original(self, *args, **kwargs)
            timer.times.append(time.perf_counter() - start)
            return out

        ClusterData.gradient = timed
        return self

    def __exit__(self, *exc):
        ClusterData.gradient = self._original


def fit(client, X, y, skip_first=True, **params):
    settings = dict(
        hidden_layer_sizes=(32,),
        solver="sgd",
        learning_rate_init=1e-3,
        tol=0,
        n_iter_no_change=10**6,
        random_state=0,
    )
    estimator = BatchMLPRegressor(**{**settings, **params})
    with StepTimer() as timer, warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = DataParallel(estimator, client=client).fit(X, y)
    times = timer.times[1:] if skip_first and len(timer.times) > 1 else timer.times
    traffic = model.traffic_
    return {
        "step": statistics.median(times),
        "sent": traffic["bytes_sent"] / traffic["steps"],
        "received": traffic["bytes_received"] / traffic["steps"],
    }


def cases(epochs):
    """(name, rows of the data used or None for all, fit settings)."""
    return [
        # 2 epochs of 40 steps of 64 rows in stored order: one block per step.
        (
            "overhead (batch 64)",
            64 * 40,
            dict(batch_size=64, shuffle=False, max_iter=2),
        ),
        ("batch 65536", None, dict(batch_size=65536, max_iter=1)),
        ("full", None, dict(batch_size="full", max_iter=epochs, skip_first=False)),
        ("lbfgs (1 evaluation)", None, dict(solver="lbfgs", max_iter=epochs)),
    ]


def start(n_workers):
    cluster = distributed.LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        host="127.0.0.1",
        dashboard_address=None,
    )
    return cluster, distributed.Client(cluster, set_as_default=False)


def measure_once(n_workers, rows, chunk_rows, epochs):
    """Step figures of every case on a fresh cluster of ``n_workers``."""
    cluster, client = start(n_workers)
    try:
        data = client.persist(list(make_data(rows, chunk_rows)))
        with client.as_current():
            distributed.wait(data)
        return {
            name: fit(
                client,
                *(data if used is None else (A[:used] for A in data)),
                **settings,
            )
            for name, used, settings in cases(epochs)
        }
    finally:
        client.close()
        cluster.close()


def measure(rows, chunk_rows, epochs, rounds):
    """Median step figures per number of workers and case.

    Every round measures each configuration in a new process (see the module
    docstring), alternating, so that a change in the machine's load hits
    both; each figure is the median over the rounds.
    """
    runs = {n: {name: [] for name, _, _ in cases(epochs)} for n in (1, 2)}
    for _ in range(rounds):
        for n in runs:
            command = [
                sys.executable,
                __file__,
                "--measure-once",
                str(n),
                *("--rows", str(rows), "--chunk-rows", str(chunk_rows)),
                *("--epochs", str(epochs)),
            ]
            out = subprocess.run(command, capture_output=True, text=True)
            if out.returncode:
                sys.exit(f"the {n}-worker measurement failed:\n{out.stderr[-3000:]}")
            for name, figures in json.loads(out.stdout.splitlines()[-1]).items():
                runs[n][name].append(figures)
    return {
        n: {
            name: {
                key: statistics.median(r[key] for r in measured)
                for key in ("step", "sent", "received")
            }
            for name, measured in by_case.items()
        }
        for n, by_case in runs.items()
    }


def client_memory(client, rows, chunk_rows):
    """Client RSS before and at most during a 2-epoch full-batch fit.

    A small fit first imports and warms up what any fit needs, so that the
    growth measured is what the data's size costs the client.
    """
    fit(client, *make_data(4096, 1024), batch_size="full", max_iter=2)
    X, y = make_data(rows, chunk_rows)
    process = psutil.Process()
    baseline = process.memory_info().rss
    peak, done = [baseline], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        fit(client, X, y, batch_size="full", max_iter=2)
    finally:
        done.set()
        sampler.join()
    return X.nbytes, baseline, peak[0]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2 * 10**6)
    parser.add_argument("--memory-rows", type=int, default=2 * 10**6)
    parser.add_argument("--chunk-rows", type=int, default=125_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, smoke test")
    parser.add_argument(
        "--measure-once", type=int, metavar="N_WORKERS", help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.measure_once:  # one configuration, in a process of its own
        figures = measure_once(
            args.measure_once, args.rows, args.chunk_rows, args.epochs
        )
        print(json.dumps(figures))
        return
    if args.quick:
        args.rows = args.memory_rows = 2**17
        args.chunk_rows, args.epochs, args.rounds = 2**15, 2, 1
    print("\n".join(environment_lines()))
    print(
        f"data: {args.rows} x {FEATURES} float64 in chunks of {args.chunk_rows} rows; "
        "hidden_layer_sizes=(32,); medians over the steps of a fit, then over "
        f"{args.rounds} alternating rounds, each configuration in a new process\n"
    )
    results = measure(args.rows, args.chunk_rows, args.epochs, args.rounds)
    table = []
    for case in results[1]:
        one, two = results[1][case], results[2][case]
        table.append(
            [
                case,
                f"{1e3 * one['step']:.1f}",
                f"{1e3 * two['step']:.1f}",
                f"{one['step'] / two['step']:.2f}x",
                f"{two['sent'] / 1e3:.1f} / {two['received'] / 1e3:.1f}",
            ]
        )
    headers = ["step", "1 worker (ms)", "2 workers (ms)", "scaling"]
    print(markdown_table(headers + ["kB sent / received (2 workers)"], table))
    for n in (1, 2):
        overhead = results[n]["overhead (batch 64)"]["step"]
        full = results[n]["full"]["step"]
        per_row = max(full - overhead, 1e-12) / args.rows
        print(
            f"\n{n} worker(s): round-trip overhead {1e3 * overhead:.1f} ms per step; "
            f"a step is compute-bound above about {overhead / per_row:,.0f} rows"
        )
    cluster, client = start(2)
    try:
        x_bytes, baseline, peak = client_memory(
            client, args.memory_rows, args.chunk_rows
        )
    finally:
        client.close()
        cluster.close()
    growth = peak - baseline
    print(
        f"\nclient RSS during a full-batch fit on {x_bytes / 1e9:.2f} GB of X "
        f"(2 workers): baseline {baseline / 2**20:.0f} MiB, peak "
        f"{peak / 2**20:.0f} MiB, growth {growth / 2**20:.1f} MiB = "
        f"{100 * growth / x_bytes:.2f}% of X (target < 5%)"
    )


if __name__ == "__main__":
    main()
