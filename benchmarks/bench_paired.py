"""Training time of two revisions of skbatchnet, paired fit by fit.

The gate of a refactoring: each of two git revisions (``--old``, ``--new``;
``.`` is the checkout as it is on disk, uncommitted changes included) is
copied to a temporary directory and installed from there with pip into a
directory of its own, so the two compiled loops are separate builds. In each
round, each install gets a worker process of its own (this script with
``--worker``, ``PYTHONPATH`` set to the install), which fits
``BatchMLPClassifier`` (the public API only, since module names inside the
package may differ between the revisions) on the commands it reads from
stdin and replies with the fit's wall time. A process keeps its speed for
its lifetime (where its buffers fall in memory, for one): two processes
running the same build differ by up to several percent at small batches,
run after run, so the workers are started afresh every round, and each
warms up with an untimed fit first.

The data, the model settings, the batch sizes, the subsample of the small
batch sizes and the rest before each fit (``BLAS_REST``) are those of
``bench_training.py``; only the epochs per fit differ (``EPOCHS``). In every
round each configuration is fitted by both installs back to back, old first
in even rounds and new first in odd ones, and each configuration's figure is
the median over the rounds of the ratio new time / old time of the round's
two fits. Both installs must do the same work: the same epochs and loss
curves equal to ``--loss-rtol``, checked at every fit; a difference stops the
run with an error.

The table gives, per solver, dtype and batch size, the median ratio, its
quartiles and its extremes (the spread), and PASS when the median is at most
1.05 (``MAX_RATIO``). The exit status is 0 whatever the verdicts; it is
nonzero only when the run itself fails. Running a revision against itself
(``--old main --new main``) measures the noise floor of the machine.

Run from the repository root::

    python benchmarks/bench_paired.py --old main --new . --solver sgd --dtype float64
    python benchmarks/bench_paired.py --old main --new main --quick    # smoke test
"""

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

from _report import environment_lines, markdown_table
from bench_training import (
    BATCH_SIZES,
    BLAS_REST,
    DTYPES,
    FULL,
    QUICK,
    SMALL_BATCH_SIZES,
    choices,
    flops_per_sample,
    make_data,
    matmul_rate,
    model_params,
    thread_speedup,
    timed_fit,
)

# The requirement of a refactoring: the median of new time / old time at most
# this, at every batch size, over at least MIN_ROUNDS rounds.
MAX_RATIO = 1.05
MIN_ROUNDS = 9
# Epochs per fit at each batch size: three times bench_training.py's 2, and
# more at the small batch sizes, whose 2-epoch sgd fits take 0.03 to 0.2 s.
# Identical builds measured against each other on a loaded 2-core machine
# (--blas-threads 1) gave medians of 0.89 to 1.11 with a third of these
# epochs, 0.94 to 1.04 with these.
EPOCHS = {1: 24, 8: 60, 32: 12, 200: 6, 1024: 6, "full": 6}
# Relative tolerance of the loss curves of the two installs, per dtype.
LOSS_RTOL = {"float64": 1e-9, "float32": 1e-5}
HERE = os.path.dirname(os.path.abspath(__file__))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--old", default="main", help="git revision of the baseline (default main)"
    )
    parser.add_argument(
        "--new",
        default=".",
        help="git revision measured against it; '.' (the default) is the "
        "checkout as it is on disk",
    )
    parser.add_argument(
        "--rounds", type=int, default=None, help=f"default {MIN_ROUNDS}"
    )
    parser.add_argument("--solver", choices=["sgd", "adam", "both"], default="both")
    parser.add_argument(
        "--dtype", choices=["float64", "float32", "both"], default="both"
    )
    parser.add_argument(
        "--batch-size",
        action="append",
        default=None,
        help="only this batch size (repeatable; default: all of bench_training.py); "
        "to look again, with more rounds, at a row near the verdict",
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny data and 2 rounds: a smoke test"
    )
    parser.add_argument(
        "--blas-threads",
        type=int,
        default=None,
        help="limit the workers' BLAS thread pools to this many threads",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="limit every thread pool of the workers (BLAS and OpenMP) to this "
        "many threads, with threadpoolctl",
    )
    parser.add_argument(
        "--thread-pairs",
        action="store_true",
        help="also time, per install, two fits in two Python threads against "
        "the two in a row (bench_training.thread_speedup) at batch 1, 200, 1024",
    )
    parser.add_argument(
        "--loss-rtol",
        type=float,
        default=None,
        help="relative tolerance of the two installs' loss curves "
        "(default 1e-9 in float64, 1e-5 in float32)",
    )
    parser.add_argument(
        "--no-build-isolation",
        action="store_true",
        help="build with the build dependencies installed in this environment",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# The worker: one install's side of the measurement, in a process of its own.


def worker(blas_threads, threads=None):
    """Answer the parent's JSON commands, one per line, until stdin closes.

    ``{"cmd": "hello"}`` gets the environment and where skbatchnet was
    imported from; ``{"cmd": "fit", ...}`` one timed fit (after BLAS_REST,
    in ``timed_fit``). Anything printed by the fits goes to stderr, so that
    stdout carries only the replies.
    """
    from sklearn.exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits

    import skbatchnet
    from skbatchnet import BatchMLPClassifier

    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    replies, sys.stdout = sys.stdout, sys.stderr
    limits = threadpool_limits(limits=threads)
    with limits, threadpool_limits(limits=blas_threads, user_api="blas"):
        for line in sys.stdin:
            command = json.loads(line)
            if command["cmd"] == "hello":
                reply = {
                    "file": skbatchnet.__file__,
                    "version": skbatchnet.__version__,
                    "environment": environment_lines(),
                }
            elif command["cmd"] == "warm":
                # First calls pay for imports and thread pools, not training.
                X, y = make_data(200, command["dtype"])
                for solver in ("sgd", "adam"):
                    params = model_params(solver, 2)
                    BatchMLPClassifier(batch_size=8, **params).fit(X, y)
                reply = {}
            elif command["cmd"] == "threads":
                reply = {
                    "speedup": thread_speedup(
                        FULL, command["repeats"], command["batch_size"]
                    )
                }
            else:
                X, y = make_data(command["n_samples"], command["dtype"])
                model = BatchMLPClassifier(
                    batch_size=command["batch_size"],
                    **model_params(command["solver"], command["epochs"]),
                )
                reply = {
                    "seconds": timed_fit(model, X, y),
                    "n_iter": model.n_iter_,
                    "loss_curve": [float(v) for v in model.loss_curve_],
                }
            replies.write(json.dumps(reply) + "\n")
            replies.flush()


class Worker:
    """The parent's handle on one worker process."""

    def __init__(self, side, install, blas_threads, threads=None):
        self.side, self.install = side, install
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [install, os.environ.get("PYTHONPATH")])
        )
        command = [sys.executable, os.path.abspath(__file__), "--worker"]
        if blas_threads is not None:
            command += ["--blas-threads", str(blas_threads)]
        if threads is not None:
            command += ["--threads", str(threads)]
        # stderr is the parent's, so that a worker's traceback is seen.
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=install,
            env=env,
        )

    def ask(self, **command):
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            status = self.process.wait()
            raise RuntimeError(
                f"the {self.side} worker exited (status {status}) on {command}"
            )
        return json.loads(line)

    def close(self):
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# Building the two installs.


def git(*args, cwd=HERE):
    out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"git {' '.join(args)} failed:\n{out.stderr}")
    return out.stdout


def resolve(rev):
    """``rev`` as a full commit hash (``.`` stays ``.``), and its label.

    Resolved once, before anything is built, so that a branch that moves
    during the run cannot give the report one commit and the build another.
    """
    head = git("rev-parse", "--verify", "HEAD" if rev == "." else f"{rev}^{{commit}}")
    head = head.strip()
    if rev != ".":
        return head, f"{rev} ({head[:10]})"
    dirty = git("status", "--porcelain", "--untracked-files=normal").strip()
    changes = " + uncommitted changes" if dirty else ""
    return ".", f". (the checkout: {head[:10]}{changes})"


def export(rev, destination):
    """The files of commit ``rev`` (``.``: the checkout on disk) in
    ``destination``."""
    root = git("rev-parse", "--show-toplevel").strip()
    os.makedirs(destination)
    if rev != ".":
        archive = subprocess.run(
            ["git", "archive", "--format=tar", rev],
            cwd=root,
            capture_output=True,
            check=True,
        )
        subprocess.run(
            ["tar", "-x", "-C", destination], input=archive.stdout, check=True
        )
        return
    # Tracked files and untracked ones that are not ignored, as they are now:
    # no build products of the checkout (they are ignored) reach the build.
    listed = git(
        "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=root
    )
    for name in filter(None, listed.split("\0")):
        source = os.path.join(root, name)
        if os.path.isfile(source):  # a tracked file deleted on disk is skipped
            target = os.path.join(destination, name)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copy2(source, target)


def build(revisions, workdir, no_build_isolation):
    """One pip install per side into a directory of its own, built in parallel.

    Returns ``{side: install directory}``.
    """
    builds = {}
    for side, rev in revisions.items():
        source = os.path.join(workdir, f"{side}-source")
        install = os.path.join(workdir, f"{side}-install")
        export(rev, source)
        command = [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet"]
        if no_build_isolation:
            command.append("--no-build-isolation")
        command += ["--target", install, source]
        log = open(os.path.join(workdir, f"{side}-build.log"), "w+")
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, text=True
        )
        builds[side] = (install, process, log)
    failures = []
    for side, (_, process, log) in builds.items():
        with log:
            if process.wait():
                log.seek(0)
                failures.append(f"building {side} ({revisions[side]}) failed:\n")
                failures.append(log.read()[-4000:])
    if failures:
        raise RuntimeError("".join(failures))
    return {side: install for side, (install, _, _) in builds.items()}


# The measurement.


def configurations(solvers, dtypes, quick, batch_sizes=None):
    """(solver, dtype, batch size, rows, epochs) of every row of the table."""
    settings = QUICK if quick else FULL
    chosen = [b for b in BATCH_SIZES if batch_sizes is None or str(b) in batch_sizes]
    if not chosen:
        raise SystemExit(f"--batch-size must be among {BATCH_SIZES}, got {batch_sizes}")
    return [
        (
            solver,
            dtype,
            batch_size,
            settings.n_small if batch_size in SMALL_BATCH_SIZES else settings.n_samples,
            settings.epochs if quick else EPOCHS[batch_size],
        )
        for solver in solvers
        for dtype in dtypes
        for batch_size in chosen
    ]


def check_same_work(config, reference, reply, side, rtol):
    """Stop the run when a fit's epochs or loss curve differ from the reference."""
    if reply["n_iter"] != reference["n_iter"]:
        raise RuntimeError(
            f"{config}: {side} ran {reply['n_iter']} epochs, "
            f"the old install {reference['n_iter']}"
        )
    for epoch, (a, b) in enumerate(zip(reference["loss_curve"], reply["loss_curve"])):
        if abs(a - b) > rtol * abs(a):
            raise RuntimeError(
                f"{config}: {side}'s loss at epoch {epoch + 1} is {b!r}, the old "
                f"install's {a!r} (relative tolerance {rtol:g}): the two do not "
                "compute the same fit"
            )


def one_round(workers, configs, order, references, loss_rtol):
    """Fit every configuration with both workers in ``order``: {config: times}."""
    times = {}
    for config in configs:
        solver, dtype, batch_size, n_samples, epochs = config
        rtol = LOSS_RTOL[dtype] if loss_rtol is None else loss_rtol
        times[config] = {}
        for side in order:
            reply = workers[side].ask(
                cmd="fit",
                solver=solver,
                dtype=dtype,
                batch_size=batch_size,
                n_samples=n_samples,
                epochs=epochs,
            )
            reference = references.setdefault(config, reply)
            check_same_work(config, reference, reply, side, rtol)
            times[config][side] = reply["seconds"]
    return times


HEADERS = [
    "solver",
    "dtype",
    "batch",
    "n",
    "epochs",
    "old us",
    "new us",
    "old frac",
    "new frac",
    "median new/old",
    "q1",
    "q3",
    "min",
    "max",
    f"median <= {MAX_RATIO}",
]


def table_row(config, old, new, rate):
    """The cells of one configuration's row: times are medians, per sample per
    epoch; frac is the fraction of the matmul rate ``rate`` (FLOP/s) that the
    fit's products would take, at the median time."""
    solver, dtype, batch_size, n_samples, epochs = config
    floor = flops_per_sample() * n_samples * epochs / rate
    ratios = [b / a for a, b in zip(old, new)]
    median = statistics.median(ratios)
    if len(ratios) > 1:
        q1, _, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
    else:
        q1 = q3 = median
    per_sample = 1e6 / (n_samples * epochs)
    return [
        solver,
        dtype,
        batch_size,
        n_samples,
        epochs,
        f"{statistics.median(old) * per_sample:.3f}",
        f"{statistics.median(new) * per_sample:.3f}",
        f"{floor / statistics.median(old):.2f}",
        f"{floor / statistics.median(new):.2f}",
        f"{median:.3f}",
        f"{q1:.3f}",
        f"{q3:.3f}",
        f"{min(ratios):.3f}",
        f"{max(ratios):.3f}",
        "PASS" if median <= MAX_RATIO else "FAIL",
    ]


def start_workers(installs, blas_threads, stack, threads=None):
    """A fresh, warmed-up worker per install, closed by ``stack``; and their
    hello replies, checked to come from their own install."""
    workers = {}
    for side, install in installs.items():
        workers[side] = Worker(side, install, blas_threads, threads)
        stack.callback(workers[side].close)
    hello = {side: w.ask(cmd="hello") for side, w in workers.items()}
    for side, reply in hello.items():
        imported = os.path.realpath(reply["file"])
        if not imported.startswith(os.path.realpath(installs[side]) + os.sep):
            raise RuntimeError(
                f"the {side} worker imported skbatchnet from {imported}, "
                f"not from its install {installs[side]}"
            )
    for worker_ in workers.values():
        worker_.ask(cmd="warm", dtype="float64")
    return workers, hello


def run(args, workdir):
    start = time.perf_counter()
    rounds = args.rounds or (2 if args.quick else MIN_ROUNDS)
    resolved = {"old": resolve(args.old), "new": resolve(args.new)}
    revisions = {side: commit for side, (commit, _) in resolved.items()}
    labels = {side: label for side, (_, label) in resolved.items()}
    configs = configurations(
        choices(args.solver, ("sgd", "adam")),
        choices(args.dtype, DTYPES),
        args.quick,
        args.batch_size,
    )

    print("# skbatchnet paired training benchmark: new against old\n")
    print(f"building old = {labels['old']} and new = {labels['new']} ...", flush=True)
    installs = build(revisions, workdir, args.no_build_isolation)
    print(f"built in {time.perf_counter() - start:.0f} s\n", flush=True)

    with contextlib.ExitStack() as stack:
        workers, hello = start_workers(installs, args.blas_threads, stack, args.threads)
        for line in hello["old"]["environment"]:
            print(f"- {line}")
        for side in ("old", "new"):
            print(f"- {side}: {labels[side]}, skbatchnet {hello[side]['version']}")
        settings = QUICK if args.quick else FULL
        print(
            f"- data, model and rest before each fit ({BLAS_REST} s) as in "
            f"bench_training.py: {settings.n_samples} rows ({settings.n_small} for "
            f"batch sizes {', '.join(map(str, SMALL_BATCH_SIZES))}); epochs per fit "
            "in the table"
        )
        print(
            f"- {rounds} rounds after an untimed one, each with fresh worker "
            "processes; in each, every row is fitted by old and new back to back "
            "(new first in odd rounds); ratio = new time / old time of a round's "
            "pair"
        )
        if args.quick:
            print("- --quick: a smoke test, the times and verdicts mean nothing")
        elif rounds < MIN_ROUNDS:
            print(f"- fewer than the {MIN_ROUNDS} rounds a refactoring needs")
        print(flush=True)

    references = {}
    warm = time.perf_counter()
    with contextlib.ExitStack() as stack:
        workers, _ = start_workers(installs, args.blas_threads, stack, args.threads)
        one_round(workers, configs, ("old", "new"), references, args.loss_rtol)
    per_round = time.perf_counter() - warm
    minutes = rounds * per_round / 60
    print(
        f"untimed round (warm-up, same-work check): {per_round:.0f} s; the "
        f"{rounds} timed rounds should take about {minutes:.1f} min",
        flush=True,
    )
    times = {config: {"old": [], "new": []} for config in configs}
    rates = {dtype: [] for dtype in choices(args.dtype, DTYPES)}
    for round_ in range(rounds):
        order = ("old", "new") if round_ % 2 == 0 else ("new", "old")
        for dtype in rates:  # in this process, between the workers' fits
            rates[dtype].append(matmul_rate(dtype, 3 if args.quick else 20))
        with contextlib.ExitStack() as stack:
            workers, _ = start_workers(installs, args.blas_threads, stack, args.threads)
            measured = one_round(workers, configs, order, references, args.loss_rtol)
        for config, by_side in measured.items():
            for side, seconds in by_side.items():
                times[config][side].append(seconds)
        print(f"round {round_ + 1} of {rounds} done", flush=True)

    rate = {dtype: statistics.median(r) for dtype, r in rates.items()}
    rows = [table_row(c, times[c]["old"], times[c]["new"], rate[c[1]]) for c in configs]
    print("\n## Results\n")
    print(
        "Times in microseconds per sample per epoch, medians over the rounds; "
        "the ratio new/old is taken per round, of two adjacent fits, and "
        "summarized by its median, quartiles and extremes. frac: the fraction "
        "of the matmul rate (bench_training.matmul_rate, measured before each "
        "round; medians "
        + ", ".join(f"{d} {r / 1e9:.1f} GFLOP/s" for d, r in rate.items())
        + ") that the fits' products would take at the median time.\n"
    )
    print(markdown_table(HEADERS, rows))
    failed = [row for row in rows if row[-1] == "FAIL"]
    print(
        f"\n{len(rows) - len(failed)} of {len(rows)} rows have a median new/old "
        f"of at most {MAX_RATIO}"
        + (
            "; above it: "
            + ", ".join(f"{r[0]} {r[1]} batch {r[2]} ({r[7]})" for r in failed)
            if failed
            else ""
        )
    )
    if args.thread_pairs:
        thread_pairs(installs, args, min(rounds, 3))
    print(f"total wall time: {time.perf_counter() - start:.1f} s")


def thread_pairs(installs, args, repeats):
    """Per install, two fits in two Python threads against the two in a row."""
    print("\n## Two fits in two threads\n")
    print(
        "Throughput of two fits in two Python threads over the same two fits one "
        "after the other (bench_training.thread_speedup; the median of "
        f"{repeats} pairs), each install in a fresh worker, alternating.\n"
    )
    rows = []
    for batch_size in (1, 200, 1024):
        row = [batch_size]
        for side in ("old", "new"):
            with contextlib.ExitStack() as stack:
                workers, _ = start_workers(
                    {side: installs[side]}, args.blas_threads, stack, args.threads
                )
                reply = workers[side].ask(
                    cmd="threads", repeats=repeats, batch_size=batch_size
                )
            row.append(f"{reply['speedup']:.2f}")
        rows.append(row)
    print(markdown_table(["batch", "old", "new"], rows))


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        worker(args.blas_threads, args.threads)
        return
    try:
        with tempfile.TemporaryDirectory(prefix="bench_paired-") as workdir:
            run(args, workdir)
    except (RuntimeError, subprocess.CalledProcessError) as error:
        sys.exit(f"bench_paired failed: {error}")


if __name__ == "__main__":
    main()
