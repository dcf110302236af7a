"""Speed of DP-SGD: skbatchnet against Opacus, per sample and epoch.

The network 64-128-128-10 (ReLU, softmax output), plain SGD, float32, on
8000 rows of Gaussian noise with 64 features and 10 random classes (the data
of ``bench_clipping.py``). Five ways to train it, from the same initial
weights:

- ``skb plain``: ``BatchMLPClassifier``, shuffled batches, ``'mean'``, no
  clipping;
- ``skb DP``: DP-SGD, ``batch_sampling='poisson'``,
  ``gradient_reduction='unbiased'``, ``max_gradient_norm=1``,
  ``noise_multiplier=1``;
- ``Opacus hooks``: ``make_private`` with Poisson sampling and
  ``grad_sample_mode='hooks'`` (its default: per-example gradients
  materialized), same C and sigma;
- ``Opacus ghost``: the same with ``grad_sample_mode='ghost'`` (ghost
  clipping: per-example norms from the layers' inputs and output gradients,
  then a second backward pass);
- ``torch plain``: torch SGD on shuffled batches without privacy, for
  reference (what Opacus adds to a torch step).

Times are microseconds per sample per epoch (per ``n`` rows) of *marginal*
epochs: skbatchnet fits ``1 + E`` epochs and 1 epoch, and the difference is
divided by ``E``, which leaves out what a fit does once (input checks, the
initial weights, the privacy accounting of ``epsilon_``, about 0.05 s);
Opacus and torch build the model and ``make_private`` untimed, train one
untimed epoch, and time the next ``E``. So both sides time steps only:
sampling the batches, forward, backward, clipping, noise, the update (and
Opacus's per-step accountant record). The ratios of whole fits (``1 + E``
epochs, everything included) are printed too. Before timing, the script
checks that one clipped full-batch step without noise leaves the same
weights in skbatchnet and in both Opacus modes.

The configurations alternate: in every round each runs once per batch size,
in reversed order in odd rounds, after a rest that lets the other library's
BLAS and OpenMP threads stop spinning; each ratio is the median, with its
interquartile range, of the ratios of the two fits of the same round.

    python benchmarks/bench_dp.py                  # about 3 minutes
    python benchmarks/bench_dp.py --batch 16 64 256 1024 --rounds 9
    python benchmarks/bench_dp.py --quick          # smoke test
    python benchmarks/bench_dp.py --without-skbatchnet-dp   # Opacus side only

Needs the ``bench`` extra (torch and Opacus): ``pip install -e ".[bench]"``.
"""

import argparse
import math
import statistics
import time

import numpy as np
from _report import environment_lines, markdown_table
from _torch_dp import (
    OpacusRun,
    TorchRun,
    check_same_step,
    environment_line,
    initial_weights,
    load_average,
    quiet,
    require_skbatchnet_dp,
    torch,
)

from skbatchnet import BatchMLPClassifier

UNITS = (64, 128, 128, 10)
SEED = 0
C = 1.0
SIGMA = 1.0
DELTA = 1e-5
LEARNING_RATE = 0.01

CONFIGS = ("skb plain", "skb DP", "Opacus hooks", "Opacus ghost", "torch plain")

# (numerator, denominator, batch sizes, target, whether the ratio must be at
# most the target rather than at least)
TARGETS = (
    ("skb DP", "skb plain", (256,), 1.6, True),
    ("Opacus hooks", "skb DP", (64, 256), 8.0, False),
    ("Opacus ghost", "skb DP", (256,), 3.0, False),
)


def data(n):
    rng = np.random.RandomState(0)
    X = rng.standard_normal((n, UNITS[0])).astype(np.float32)
    y = rng.randint(0, UNITS[-1], n)
    return X, y


def skbatchnet_fit_seconds(X, y, batch, dp, epochs, rest):
    """Wall time of one ``fit`` of ``epochs`` epochs."""
    params = dict(
        hidden_layer_sizes=UNITS[1:-1],
        activation="relu",
        solver="sgd",
        momentum=0.0,
        learning_rate_init=LEARNING_RATE,
        alpha=0.0,
        batch_size=batch,
        max_iter=epochs,
        random_state=SEED,
    )
    if dp:
        # Under noise the fit runs exactly max_iter epochs by itself.
        params.update(
            max_gradient_norm=C,
            noise_multiplier=SIGMA,
            batch_sampling="poisson",
            gradient_reduction="unbiased",
            target_delta=DELTA,
            unsafe_noise_seed=None,
        )
    else:
        params.update(tol=0.0, n_iter_no_change=10**6)
    model = BatchMLPClassifier(**params)
    time.sleep(rest)
    start = time.perf_counter()
    model.fit(X, y)
    seconds = time.perf_counter() - start
    if model.n_iter_ != epochs:
        raise RuntimeError(f"fit ran {model.n_iter_} epochs, not {epochs}")
    return seconds


def measure_skbatchnet(X, y, batch, dp, epochs, rest):
    """(marginal seconds per epoch, seconds of the whole 1 + E epoch fit)."""
    short = skbatchnet_fit_seconds(X, y, batch, dp, 1, rest)
    long = skbatchnet_fit_seconds(X, y, batch, dp, 1 + epochs, rest)
    return (long - short) / epochs, long / (1 + epochs)


def measure_torch(X, y, batch, config, epochs, rest, loader, weights):
    """(seconds per epoch of E epochs after a warm one, the same again).

    Setup (``make_private``) and the first epoch are untimed: the whole-fit
    figure of torch and Opacus is the marginal one.
    """
    if config == "torch plain":
        run = TorchRun(
            *weights, X, y, batch_size=batch, learning_rate=LEARNING_RATE, loader=loader
        )
    else:
        run = OpacusRun(
            *weights,
            X,
            y,
            batch_size=batch,
            learning_rate=LEARNING_RATE,
            noise_multiplier=SIGMA,
            max_grad_norm=C,
            mode=config.split()[1],
            loader=loader,
        )
    run.train(1)
    time.sleep(rest)
    start = time.perf_counter()
    run.train(epochs)
    per_epoch = (time.perf_counter() - start) / epochs
    return per_epoch, per_epoch


def quartiles(values):
    if len(values) == 1:
        return values[0], values[0], values[0]
    q1, med, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, med, q3


def spread(values, digits):
    q1, med, q3 = quartiles(values)
    return f"{med:.{digits}f} [{q1:.{digits}f}–{q3:.{digits}f}]"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke test")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batch", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--n", type=int, default=8000)
    parser.add_argument(
        "--skb-epochs",
        type=int,
        default=10,
        help="E for skbatchnet: fits of 1 + E and 1 epochs (default 10)",
    )
    parser.add_argument(
        "--torch-epochs",
        type=int,
        default=2,
        help="E for Opacus and torch: timed epochs after a warm one (default 2)",
    )
    parser.add_argument("--torch-threads", type=int, default=2)
    parser.add_argument(
        "--rest", type=float, default=0.3, help="seconds of rest before each timing"
    )
    parser.add_argument(
        "--loader",
        choices=["batched", "tensordataset"],
        default="batched",
        help="how torch's DataLoader fetches a batch (see benchmarks/README.md)",
    )
    parser.add_argument(
        "--without-skbatchnet-dp",
        action="store_true",
        help="skip skbatchnet's DP fit (for a skbatchnet without DP-SGD)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.rounds, args.batch = 1000, 1, [64, 256]
        args.skb_epochs, args.torch_epochs, args.rest = 2, 1, 0.0
    if not args.without_skbatchnet_dp:
        require_skbatchnet_dp("bench_dp.py")
    configs = [c for c in CONFIGS if not (c == "skb DP" and args.without_skbatchnet_dp)]
    torch.set_num_threads(args.torch_threads)
    quiet()

    X, y = data(args.n)
    weights = initial_weights(list(UNITS), SEED, np.float32)
    print("\n".join(environment_lines()))
    print(environment_line())
    print(f"load average at start: {load_average()}")
    for mode in ("hooks", "ghost"):
        difference, step = check_same_step(
            X, y, UNITS[1:-1], max_grad_norm=C, learning_rate=LEARNING_RATE, mode=mode
        )
        print(
            f"one clipped full-batch step without noise, skbatchnet against Opacus "
            f"{mode}: weights differ by at most {difference:.2g} (step {step:.2g})"
        )
    print(
        f"network {list(UNITS)}, float32, sgd (lr {LEARNING_RATE}, no momentum), "
        f"n={args.n} Gaussian rows, 10 random classes; DP: C={C}, sigma={SIGMA}, "
        f"Poisson sampling; {args.rounds} rounds; skbatchnet "
        f"(fit of 1+{args.skb_epochs}) - (fit of 1), torch/Opacus "
        f"{args.torch_epochs} epochs after a warm one; loader '{args.loader}'"
    )
    for batch in args.batch:
        steps = math.ceil(args.n / batch)
        print(
            f"  batch {batch}: {steps} steps per epoch in both; skbatchnet q = "
            f"{batch}/{args.n}, divisor {batch}; Opacus q = 1/{steps}, divisor "
            f"{int(args.n / steps)}"
        )
    print()

    marginal = {(c, b): [] for c in configs for b in args.batch}
    whole = {(c, b): [] for c in configs for b in args.batch}
    start = time.perf_counter()
    # Warm up every path once (imports, first allocations, thread pools).
    for batch in args.batch:
        for config in configs:
            run_one(X, y, batch, config, 1, 0.0, args, weights)
    for r in range(args.rounds):
        order = configs if r % 2 == 0 else configs[::-1]
        for batch in args.batch:
            for config in order:
                m, w = run_one(X, y, batch, config, None, args.rest, args, weights)
                marginal[config, batch].append(m * 1e6 / args.n)
                whole[config, batch].append(w * 1e6 / args.n)
        print(
            f"round {r + 1}/{args.rounds} done, {time.perf_counter() - start:.0f} s, "
            f"load {load_average()}",
            flush=True,
        )

    print()
    print("microseconds per sample per epoch, median [IQR] over the rounds")
    print()
    rows = [
        [batch] + [spread(marginal[c, batch], 2) for c in configs]
        for batch in args.batch
    ]
    print(markdown_table(["batch", *configs], rows))
    skb = [c for c in configs if c.startswith("skb")]
    print()
    print(
        f"skbatchnet's whole fits of 1+{args.skb_epochs} epochs (input checks, "
        "initial weights and accounting included), the same units"
    )
    print()
    rows = [[batch] + [spread(whole[c, batch], 2) for c in skb] for batch in args.batch]
    print(markdown_table(["batch", *skb], rows))

    print()
    print("ratios of the two fits of each round: median [IQR]")
    print()
    ratio_rows = []
    for num, den, batches, target, at_most in TARGETS:
        for batch in batches:
            if batch not in args.batch or num not in configs or den not in configs:
                continue
            for label, times in (("steps", marginal), ("whole fit", whole)):
                ratios = [a / b for a, b in zip(times[num, batch], times[den, batch])]
                med = quartiles(ratios)[1]
                ok = med <= target if at_most else med >= target
                ratio_rows.append(
                    [
                        f"{num} / {den}",
                        batch,
                        label,
                        spread(ratios, 2),
                        f"{'<=' if at_most else '>='} {target}",
                        "ok" if ok else "missed",
                    ]
                )
    for batch in args.batch:  # context: what privacy costs in torch
        for num in ("Opacus hooks", "Opacus ghost"):
            pairs = zip(marginal[num, batch], marginal["torch plain", batch])
            ratios = [a / b for a, b in pairs]
            ratio_rows.append(
                [f"{num} / torch plain", batch, "steps", spread(ratios, 2), "", ""]
            )
    print(
        markdown_table(
            ["ratio", "batch", "timed", "median [IQR]", "target", "status"], ratio_rows
        )
    )
    print()
    print(f"load average at end: {load_average()}")
    print(f"total wall time: {time.perf_counter() - start:.1f} s")


def run_one(X, y, batch, config, epochs, rest, args, weights):
    """(marginal, whole-fit) seconds per epoch of one configuration."""
    if config.startswith("skb"):
        return measure_skbatchnet(
            X, y, batch, config == "skb DP", epochs or args.skb_epochs, rest
        )
    return measure_torch(
        X, y, batch, config, epochs or args.torch_epochs, rest, args.loader, weights
    )


if __name__ == "__main__":
    main()
