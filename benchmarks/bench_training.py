"""Training speed of skbatchnet.BatchMLPClassifier against scikit-learn's MLP.

Both libraries train the same architecture with the same solver, dtype,
initialization and number of epochs on the same data, for every batch size in
(1, 8, 32, 200, 1024, 'full'). The two are timed alternately (sklearn,
skbatchnet, sklearn, skbatchnet, ...), and every ratio is the median of the
ratios of adjacent fits, so that the machine's drifting speed affects both
sides of each ratio alike; each fit starts after a short rest (BLAS_REST).
Only the ratios measured within one run are meaningful.

For each batch size the table gives the training time in microseconds per
sample per epoch, the ratio sklearn time / skbatchnet time, and a floor: the
time the epoch's matrix products (about 6 * sum(fan_in * fan_out) floating
point operations per sample) would take at the matrix-multiply rate measured
in the same run.

Run from the repository root::

    python benchmarks/bench_training.py            # full run, about 7 minutes
    python benchmarks/bench_training.py --quick    # smoke test
    python benchmarks/bench_training.py --save docs/_data/bench_training.csv

``--save`` also writes the table's times to a CSV file, which the
documentation plots on its Performance page.
"""

import argparse
import csv
import datetime
import functools
import statistics
import threading
import time
from dataclasses import dataclass

import numpy as np
from _report import environment_lines, markdown_table, run_timed
from sklearn.neural_network import MLPClassifier

from skbatchnet import BatchMLPClassifier

N_FEATURES = 64
HIDDEN_LAYER_SIZES = (128, 128)
N_CLASSES = 10
LAYER_UNITS = (N_FEATURES, *HIDDEN_LAYER_SIZES, N_CLASSES)
BATCH_SIZES = (1, 8, 32, 200, 1024, "full")
DTYPES = ("float64", "float32")
# Batch sizes whose rows train on a subsample, so that they finish in time.
SMALL_BATCH_SIZES = (1, 8)
# Minimum ratio sklearn time / skbatchnet time in float64, per solver. Adam's
# are lower at small batches: its update costs a square root and a division
# per parameter at every step. The two targets below apply to adam within
# ADAM_TOLERANCE.
TARGETS = {
    "sgd": {1: 20.0, 8: 6.0, 32: 3.5, 200: 2.3, 1024: 1.8},
    "adam": {1: 8.0, 8: 4.0, 32: 3.0, 200: 2.0, 1024: 1.7},
}
TARGET_DTYPE = "float64"
ADAM_TOLERANCE = 0.9
# sgd: time per sample at batch 1 over time per sample at batch 1024, at most.
TARGET_SMALL_BATCH_OVERHEAD = 8.0
# Two fits in two threads: throughput over running them one after the other.
TARGET_THREAD_SPEEDUP = 1.7
# 1000 partial_fit calls on 100-row blocks: scikit-learn time / ours.
TARGET_PARTIAL_FIT = 2.0
# At batch 1024 (float64): minimum fraction of the matrix-multiply rate, and
# minimum float32 speedup over float64.
TARGET_MATMUL_FRACTION = 0.7
TARGET_FLOAT32_SPEEDUP = 1.7
LEARNING_RATE = 1e-3
GEMM_BATCH = 1024
# Seconds of rest before each timed fit. numpy and scipy each bring their own
# OpenBLAS, with its own thread pool, and a pool's threads keep spinning for a
# while after their last product (OpenBLAS's thread timeout, 2**28 cycles by
# default). A fit that starts right after the other library's fit shares the
# cores with those spinning threads; at batch 1024 both libraries lose a third
# of their speed to it. The rest lets them sleep, as they would between the
# fits of a program that uses one library.
BLAS_REST = 0.3


@dataclass(frozen=True)
class Settings:
    n_samples: int  # rows for batch sizes 32 and up
    n_small: int  # rows for batch sizes 1 and 8
    epochs: int  # epochs per fit
    repeats: int  # fits per library and batch size
    gemm_repeats: int  # repetitions of the matrix-multiply measurement


FULL = Settings(n_samples=20_000, n_small=2_000, epochs=2, repeats=9, gemm_repeats=20)
QUICK = Settings(n_samples=2_048, n_small=256, epochs=1, repeats=1, gemm_repeats=5)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke-test run")
    parser.add_argument("--solver", choices=["sgd", "adam", "both"], default="both")
    parser.add_argument(
        "--dtype", choices=["float64", "float32", "both"], default="both"
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="fits per library and row"
    )
    parser.add_argument(
        "--blas-threads",
        type=int,
        default=None,
        help="limit the BLAS thread pools to this many threads (default: no limit)",
    )
    parser.add_argument(
        "--save",
        metavar="PATH",
        default=None,
        help="also write the measured times to this CSV file (see SAVE_COLUMNS)",
    )
    return parser.parse_args()


def choices(value, both):
    return both if value == "both" else (value,)


def flops_per_sample():
    """Floating-point operations of one forward and backward pass, per row.

    Each layer costs three products of 2 * fan_in * fan_out operations per row:
    the forward pass, the error sent back to the layer below, the weight
    gradient.
    """
    return 6 * sum(a * b for a, b in zip(LAYER_UNITS[:-1], LAYER_UNITS[1:]))


def matmul_rate(dtype, repeats):
    """FLOP/s of np.matmul on the products of one batch-1024 training step.

    The best of ``repeats`` timings of all the step's products: per layer
    (B x fan_in) @ (fan_in x fan_out), (B x fan_out) @ (fan_out x fan_in) and
    (fan_in x B) @ (B x fan_out).
    """
    rng = np.random.default_rng(0)
    products = []
    for fan_in, fan_out in zip(LAYER_UNITS[:-1], LAYER_UNITS[1:]):
        A = rng.standard_normal((GEMM_BATCH, fan_in)).astype(dtype)
        W = rng.standard_normal((fan_in, fan_out)).astype(dtype)
        D = rng.standard_normal((GEMM_BATCH, fan_out)).astype(dtype)
        products += [
            (A, W, np.empty((GEMM_BATCH, fan_out), dtype)),
            (D, W.T, np.empty((GEMM_BATCH, fan_in), dtype)),
            (A.T, D, np.empty((fan_in, fan_out), dtype)),
        ]
    time.sleep(BLAS_REST)  # the previous fit's BLAS threads would slow it
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        for left, right, out in products:
            np.matmul(left, right, out=out)
        best = min(best, time.perf_counter() - start)
    return GEMM_BATCH * flops_per_sample() / best


@functools.cache
def make_data(n_samples, dtype):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n_samples, N_FEATURES)).astype(dtype)
    y = rng.integers(N_CLASSES, size=n_samples)
    return X, y


def model_params(solver, epochs):
    """Settings shared by both libraries: exactly ``epochs`` epochs, no stopping."""
    params = {
        "hidden_layer_sizes": HIDDEN_LAYER_SIZES,
        "solver": solver,
        "learning_rate_init": LEARNING_RATE,
        "max_iter": epochs,
        "tol": 0.0,
        "n_iter_no_change": np.inf,
        "random_state": 0,
    }
    if solver == "sgd":
        params.update(momentum=0.9, nesterovs_momentum=True)
    return params


def timed_fit(model, X, y):
    """Seconds taken by ``model.fit(X, y)``; checks every epoch was run."""
    time.sleep(BLAS_REST)
    start = time.perf_counter()
    model.fit(X, y)
    elapsed = time.perf_counter() - start
    if model.n_iter_ != model.max_iter:
        raise RuntimeError(
            f"{type(model).__name__} ran {model.n_iter_} epochs, "
            f"expected {model.max_iter}."
        )
    return elapsed


def alternate(make_models, X, y, repeats):
    """Fit times of each model, fitting them in turn ``repeats`` times."""
    times = [[] for _ in make_models]
    for _ in range(repeats):
        for make_model, recorded in zip(make_models, times):
            recorded.append(timed_fit(make_model(), X, y))
    return times


def paired_ratio(numerators, denominators):
    """Median of ``numerators[i] / denominators[i]``, the pairs timed together.

    The machine's speed changes by tens of percent for seconds at a time
    (the Performance page shows it), so a ratio of two medians taken over
    different moments carries that drift; the ratio of two adjacent timings
    does not.
    """
    return statistics.median(a / b for a, b in zip(numerators, denominators))


@dataclass(frozen=True)
class Measurement:
    """One row's fits, one of each library per round, and the matmul rate
    (FLOP/s) sampled just before each round's pair of fits."""

    solver: str
    dtype: str
    batch_size: int | str
    n_samples: int
    epochs: int
    sklearn_times: tuple  # seconds per fit, one per round
    our_times: tuple
    rates: tuple

    @property
    def sklearn_time(self):
        return statistics.median(self.sklearn_times)

    @property
    def our_time(self):
        return statistics.median(self.our_times)

    @property
    def ratio(self):
        return paired_ratio(self.sklearn_times, self.our_times)

    @property
    def floors(self):
        """Seconds the fit's matrix products take at each round's rate."""
        flops = flops_per_sample() * self.n_samples * self.epochs
        return [flops / rate for rate in self.rates]

    @property
    def floor(self):
        return statistics.median(self.floors)

    @property
    def fraction(self):
        """Fraction of the matmul rate: floor / our time, paired by round."""
        return paired_ratio(self.floors, self.our_times)


def fit_pair(solver, dtype, batch_size, settings):
    """One fit of each library at one batch size: (sklearn seconds, ours)."""
    n_samples = (
        settings.n_small if batch_size in SMALL_BATCH_SIZES else settings.n_samples
    )
    X, y = make_data(n_samples, dtype)
    params = model_params(solver, settings.epochs)
    sklearn_batch = n_samples if batch_size == "full" else batch_size
    [theirs], [ours] = alternate(
        [
            lambda: MLPClassifier(batch_size=sklearn_batch, **params),
            lambda: BatchMLPClassifier(batch_size=batch_size, **params),
        ],
        X,
        y,
        repeats=1,
    )
    return theirs, ours


HEADERS = [
    "solver",
    "dtype",
    "batch",
    "n",
    "sklearn us",
    "skbatchnet us",
    "ratio",
    "target",
    "status",
    "floor us",
    "fraction of matmul rate",
]


# The CSV written by --save: one row per solver, dtype and batch size, times in
# microseconds per sample per epoch (floor: the matrix products alone at the
# run's matmul rate), with what the reader of the file needs to weigh them.
SAVE_COLUMNS = [
    "date",
    "solver",
    "dtype",
    "batch",
    "n",
    "repeats",
    "blas_threads",
    "sklearn_us",
    "skbatchnet_us",
    "floor_us",
]


def save_csv(path, measured, settings, repeats, blas_threads):
    """Write the measurements to the CSV file ``path`` (see SAVE_COLUMNS)."""
    date = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(SAVE_COLUMNS)
        for m in measured.values():
            per_sample = 1e6 / (m.n_samples * settings.epochs)
            writer.writerow(
                [
                    date,
                    m.solver,
                    m.dtype,
                    m.batch_size,
                    m.n_samples,
                    repeats,
                    "default" if blas_threads is None else blas_threads,
                    f"{m.sklearn_time * per_sample:.4g}",
                    f"{m.our_time * per_sample:.4g}",
                    f"{m.floor * per_sample:.4g}",
                ]
            )
    print(f"saved the times to {path}")


def solver_target(solver, target):
    """An sgd target as it applies to ``solver`` (adam's are within 10%)."""
    return target if solver == "sgd" else ADAM_TOLERANCE * target


def ratio_target(m):
    """The minimum ratio for this row, or None when no target applies."""
    if m.dtype != TARGET_DTYPE:
        return None
    return TARGETS[m.solver].get(m.batch_size)


def status(value, target):
    return "ok" if value >= target else "below"


def table_row(m):
    """The cells of one row of the results table (see HEADERS)."""
    per_sample = 1e6 / (m.n_samples * m.epochs)
    target = ratio_target(m)
    if target is None:
        target_cells = ["-", "-"]
    else:
        target_cells = [f">= {target:.3g}", status(m.ratio, target)]
    return [
        m.solver,
        m.dtype,
        m.batch_size,
        m.n_samples,
        f"{m.sklearn_time * per_sample:.2f}",
        f"{m.our_time * per_sample:.2f}",
        f"{m.ratio:.2f}",
        *target_cells,
        f"{m.floor * per_sample:.3f}",
        f"{m.fraction:.2f}",
    ]


def float32_speedup(solver, settings, repeats):
    """Time in float64 over time in float32 at batch 1024, for each library.

    The two dtypes' table rows are measured minutes apart, while the machine's
    speed drifts; here float64 and float32 fits alternate, as the libraries do
    within a row, and the speedup is the median over adjacent pairs.
    """
    params = model_params(solver, settings.epochs)
    data = {dtype: make_data(settings.n_samples, dtype) for dtype in DTYPES}
    speedups = []
    for cls in (BatchMLPClassifier, MLPClassifier):
        times = {dtype: [] for dtype in DTYPES}
        for _ in range(repeats):
            for dtype in DTYPES:
                model = cls(batch_size=1024, **params)
                times[dtype].append(timed_fit(model, *data[dtype]))
        speedups.append(paired_ratio(times["float64"], times["float32"]))
    return speedups


def reduction_cost(solver, dtype, settings, repeats):
    """Time of gradient_reduction='sum' over 'mean' at batch 200.

    The learning rate of 'sum' is divided by the batch size, so both follow
    the same trajectory.
    """
    batch_size = 200
    X, y = make_data(settings.n_samples, dtype)
    params = model_params(solver, settings.epochs)
    mean_params = {**params, "gradient_reduction": "mean"}
    sum_params = {
        **params,
        "gradient_reduction": "sum",
        "learning_rate_init": LEARNING_RATE / batch_size,
    }
    mean_times, sum_times = alternate(
        [
            lambda: BatchMLPClassifier(batch_size=batch_size, **mean_params),
            lambda: BatchMLPClassifier(batch_size=batch_size, **sum_params),
        ],
        X,
        y,
        repeats,
    )
    return paired_ratio(sum_times, mean_times)


def thread_speedup(settings, repeats, batch_size=1):
    """Throughput of two fits in two threads over the two in a row.

    At batch 1, one epoch on ``10 * n_small`` rows (each fit takes about a
    second on an idle machine at the full settings); at larger batches,
    ``settings.epochs`` epochs on ``n_samples`` rows, where the fits' own
    threads (BLAS's, or the loop's) meet those of the other fit.
    """
    if batch_size == 1:
        X, y = make_data(settings.n_small * 10, "float64")
        params = {**model_params("sgd", 1), "batch_size": 1}
    else:
        X, y = make_data(settings.n_samples, "float64")
        params = {**model_params("sgd", settings.epochs), "batch_size": batch_size}

    def fit(seed):
        BatchMLPClassifier(**{**params, "random_state": seed}).fit(X, y)

    sequential, threaded = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        fit(0)
        fit(1)
        sequential.append(time.perf_counter() - start)
        threads = [threading.Thread(target=fit, args=(seed,)) for seed in (0, 1)]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        threaded.append(time.perf_counter() - start)
    return paired_ratio(sequential, threaded)


def partial_fit_ratio(dtype, repeats, calls=1000, rows=100):
    """scikit-learn time / ours for ``calls`` partial_fit calls of ``rows`` rows,
    as dask-ml's Incremental makes them."""
    X, y = make_data(calls * rows, dtype)
    params = {**model_params("sgd", 1), "batch_size": 32}
    classes = np.arange(N_CLASSES)

    def feed(model):
        start = time.perf_counter()
        for i in range(calls):
            block = slice(i * rows, (i + 1) * rows)
            model.partial_fit(X[block], y[block], classes=classes)
        return time.perf_counter() - start

    theirs, ours = [], []
    for _ in range(repeats):
        theirs.append(feed(MLPClassifier(**params)))
        ours.append(feed(BatchMLPClassifier(**params)))
    return paired_ratio(theirs, ours)


def warm_up(solvers, dtypes):
    """One tiny fit of each library, so that first-call costs are not timed."""
    for solver in solvers:
        for dtype in dtypes:
            X, y = make_data(256, dtype)
            params = model_params(solver, 1)
            MLPClassifier(batch_size=32, **params).fit(X, y)
            BatchMLPClassifier(batch_size=32, **params).fit(X, y)


def run(args):
    settings = QUICK if args.quick else FULL
    repeats = args.repeats or settings.repeats
    solvers = choices(args.solver, ("sgd", "adam"))
    dtypes = choices(args.dtype, DTYPES)

    print("# skbatchnet training benchmark\n")
    for line in environment_lines():
        print(f"- {line}")
    print(
        f"- data: {settings.n_samples} rows ({settings.n_small} for batch sizes "
        f"{', '.join(map(str, SMALL_BATCH_SIZES))}), {N_FEATURES} features, "
        f"{N_CLASSES} classes; hidden_layer_sizes={HIDDEN_LAYER_SIZES}"
    )
    print(
        f"- {settings.epochs} epochs per fit, median of {repeats} fits per "
        "library, the libraries alternating, one fit per row in each of "
        f"{repeats} rounds over the rows"
    )
    print(f"- learning_rate_init={LEARNING_RATE}; sgd: momentum=0.9, Nesterov")

    warm_up(solvers, dtypes)

    # Rounds: every row gets one fit of each library per round, rather than
    # all of its fits back to back, so that a slow spell of the machine costs
    # each row one sample of its median instead of costing one row all of them.
    # The matmul rate is sampled before each row's pair of fits, so that the
    # floor and the fits are measured at the same speed of the machine.
    keys = [(s, d, b) for s in solvers for d in dtypes for b in BATCH_SIZES]
    times = {key: ([], [], []) for key in keys}
    for round_ in range(repeats):
        for solver, dtype, batch_size in keys:
            theirs, ours, rates = times[solver, dtype, batch_size]
            rates.append(matmul_rate(dtype, settings.gemm_repeats))
            sklearn_seconds, our_seconds = fit_pair(solver, dtype, batch_size, settings)
            theirs.append(sklearn_seconds)
            ours.append(our_seconds)
        print(f"round {round_ + 1} of {repeats} done", flush=True)
    measured = {
        (solver, dtype, batch_size): Measurement(
            solver,
            dtype,
            batch_size,
            settings.n_small if batch_size in SMALL_BATCH_SIZES else settings.n_samples,
            settings.epochs,
            *map(tuple, recorded),
        )
        for (solver, dtype, batch_size), recorded in times.items()
    }

    best_rate = {}
    for dtype in dtypes:
        sampled = [r for m in measured.values() if m.dtype == dtype for r in m.rates]
        best_rate[dtype] = max(sampled)
        print(
            f"matmul rate ({dtype}, the products of a batch-{GEMM_BATCH} step, "
            f"best of {settings.gemm_repeats} timings before each row): best "
            f"{max(sampled) / 1e9:.1f}, median {statistics.median(sampled) / 1e9:.1f} "
            "GFLOP/s"
        )
    print("\n## Results\n")
    print(
        "Times in microseconds per sample per epoch, medians over the rounds; "
        "ratio = sklearn / skbatchnet, median over the rounds' pairs; floor = "
        "matrix products at the matmul rate sampled before the row, its "
        "fraction paired by round as the ratio.\n"
    )
    print(markdown_table(HEADERS, [table_row(m) for m in measured.values()]))
    print()
    if args.save is not None:
        save_csv(args.save, measured, settings, repeats, args.blas_threads)

    for solver in solvers:
        if (solver, "float64", 1024) not in measured:
            continue
        m = measured[solver, "float64", 1024]
        target = solver_target(solver, TARGET_MATMUL_FRACTION)
        # The stricter reading: the run's best rate against the median fit.
        flops = flops_per_sample() * m.n_samples * m.epochs
        strict = flops / best_rate["float64"] / m.our_time
        print(
            f"fraction of the matmul rate at batch 1024 ({solver}, float64): "
            f"{m.fraction:.2f} paired by round (target >= {target:.2f}: "
            f"{status(m.fraction, target)}); {strict:.2f} against the best rate "
            "of the run and the median fit"
        )
    if len(dtypes) == 2:
        for solver in solvers:
            ours, theirs = float32_speedup(solver, settings, repeats)
            target = solver_target(solver, TARGET_FLOAT32_SPEEDUP)
            print(
                f"float32/float64 speedup at batch 1024 ({solver}; float64 and "
                f"float32 fits alternating): skbatchnet {ours:.2f}x (target >= "
                f"{target:.2f}: {status(ours, target)}), sklearn {theirs:.2f}x"
            )
    solver, dtype = solvers[0], dtypes[0]
    cost = reduction_cost(solver, dtype, settings, repeats)
    print(
        f"reduction cost ({solver}, {dtype}, batch 200): "
        f"time('sum') / time('mean') = {cost:.2f}"
    )
    if ("sgd", "float64", 1) in measured and ("sgd", "float64", 1024) in measured:
        one, wide = measured["sgd", "float64", 1], measured["sgd", "float64", 1024]
        overhead = (one.our_time / one.n_samples) / (wide.our_time / wide.n_samples)
        target = TARGET_SMALL_BATCH_OVERHEAD
        print(
            "sgd time per sample, batch 1 over batch 1024: "
            f"{overhead:.1f}x (target <= {target:g}: "
            f"{'ok' if overhead <= target else 'above'})"
        )
    for batch_size in (1, 200, 1024):
        speedup = thread_speedup(settings, min(repeats, 3), batch_size)
        print(
            f"two batch-{batch_size} fits in two threads, throughput over one "
            f"after the other: {speedup:.2f}x (target >= {TARGET_THREAD_SPEEDUP:g}"
            f": {status(speedup, TARGET_THREAD_SPEEDUP)})"
        )
    ratio = partial_fit_ratio("float64", min(repeats, 3))
    print(
        "1000 partial_fit calls on 100-row blocks (sgd, batch 32), sklearn / "
        f"skbatchnet: {ratio:.2f}x (target >= {TARGET_PARTIAL_FIT:g}: "
        f"{status(ratio, TARGET_PARTIAL_FIT)})"
    )


def main():
    run_timed(run, parse_args())


if __name__ == "__main__":
    main()
