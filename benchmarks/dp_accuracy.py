"""Accuracy of DP-SGD on digits: skbatchnet against Opacus at epsilon 1, 3 and 8.

Both libraries train the same network, from the same initial weights, by the
same DP-SGD, and report the epsilon their own accountants find; the question
is whether skbatchnet's test accuracy is Opacus's (the issue's bar: at
epsilon 3, within 2 standard errors over at least 5 seeds).

- Data: scikit-learn's digits (1797 images of 8x8 pixels, values 0..16),
  divided by 16, the pixels' public range (a scaler fitted to the training
  rows would spend privacy the accountant does not count); a fixed stratified
  split of 1440 training and 357 test rows (``random_state=0``). 1440 is a
  multiple of the batch size, so that Opacus's sampling rate, ``1 /
  ceil(n / batch)``, and its divisor equal skbatchnet's ``batch / n`` and
  ``batch``.
- Network: one hidden layer of 64 ReLU units (64-64-10, 4810 parameters),
  softmax output with cross-entropy. Without privacy it reaches about 97 %
  in a few epochs; with DP, fewer parameters carry less noise (its norm grows
  as the square root of their number), and this width lost nothing against
  32 units in a search on a validation split of the training rows.
- DP-SGD: Poisson sampling at ``q = 180 / 1440 = 1/8``, 20 epochs of 8 steps
  (``T = 160``), clipping norm ``C = 1``, plain SGD at rate 0.5 without
  momentum or penalty, delta ``1e-5``. Fixed for all epsilons (chosen on the
  validation split, with Opacus); only the noise changes: sigma from
  ``skbatchnet.privacy.calibrate_noise_multiplier(epsilon, 1e-5, q, T)``
  (RDP), the same sigma in both libraries.
- skbatchnet: ``BatchMLPClassifier(batch_sampling='poisson',
  gradient_reduction='unbiased', max_gradient_norm=C, noise_multiplier=sigma,
  target_delta=1e-5, random_state=seed)``, noise and batches from fresh OS
  entropy (``--unsafe-noise-seed`` makes them reproducible), ``epsilon_``
  from its RDP accountant.
- Opacus: ``PrivacyEngine(accountant='rdp').make_private(...,
  poisson_sampling=True, grad_sample_mode='hooks')``, the initial weights
  copied from ``Network.initialize`` (checked against ``fit``'s),
  ``torch.manual_seed(seed)``; epsilon from ``get_epsilon(1e-5)``.
- Without privacy (``epsilon = inf`` in the table): the same network, rate,
  batch size and epochs by plain SGD over shuffled batches with the mean
  loss, no clipping, in both libraries.

Prints each epsilon's mean test accuracy with its standard error per
library, the difference skbatchnet - Opacus in units of its standard error
(``sqrt(se_skb^2 + se_opacus^2)``), and the epsilons reported; ``--save``
writes the summary as CSV (``docs/_data/dp_accuracy.csv`` for the docs).

    python benchmarks/dp_accuracy.py                 # about 3 minutes
    python benchmarks/dp_accuracy.py --save docs/_data/dp_accuracy.csv
    python benchmarks/dp_accuracy.py --quick         # smoke test
    python benchmarks/dp_accuracy.py --without-skbatchnet-dp   # Opacus side

Needs the ``bench`` extra (torch, Opacus) and ``privacy`` (dp-accounting).
"""

import argparse
import csv
import datetime
import math
import statistics
import time

import numpy as np
from _report import environment_lines, markdown_table
from _torch_dp import (
    OpacusRun,
    TorchRun,
    check_initial_weights,
    check_same_step,
    environment_line,
    initial_weights,
    load_average,
    quiet,
    require_skbatchnet_dp,
    torch,
)
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from skbatchnet import BatchMLPClassifier
from skbatchnet.privacy import calibrate_noise_multiplier, dp_sgd_epsilon

HIDDEN = (64,)
N_TRAIN = 1440
BATCH = 180
EPOCHS = 20
LEARNING_RATE = 0.5
C = 1.0
DELTA = 1e-5
EPSILONS = (1.0, 3.0, 8.0)

CSV_COLUMNS = (
    "date",
    "target_epsilon",
    "library",
    "noise_multiplier",
    "epsilon",
    "seeds",
    "mean_accuracy",
    "stderr",
    "max_gradient_norm",
    "batch_size",
    "n_train",
    "epochs",
    "steps",
    "learning_rate",
    "target_delta",
)


def digits_split():
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    return train_test_split(X, y, train_size=N_TRAIN, stratify=y, random_state=0)


def skbatchnet_fit(data, seed, sigma, args):
    """(test accuracy, epsilon_) of one skbatchnet fit; sigma None: no DP."""
    Xtr, Xte, ytr, yte = data
    params = dict(
        hidden_layer_sizes=HIDDEN,
        activation="relu",
        solver="sgd",
        momentum=0.0,
        learning_rate_init=LEARNING_RATE,
        alpha=0.0,
        batch_size=BATCH,
        max_iter=args.epochs,
        random_state=seed,
    )
    if sigma is None:
        params.update(tol=0.0, n_iter_no_change=10**6)
    else:
        params.update(dp_parameters(sigma, seed if args.unsafe_noise_seed else None))
    model = BatchMLPClassifier(**params).fit(Xtr, ytr)
    if model.n_iter_ != args.epochs:
        raise RuntimeError(f"fit ran {model.n_iter_} epochs, not {args.epochs}")
    accuracy = float(np.mean(model.predict(Xte) == yte))
    return accuracy, (math.inf if sigma is None else float(model.epsilon_))


def dp_parameters(sigma, noise_seed):
    return dict(
        max_gradient_norm=C,
        noise_multiplier=sigma,
        batch_sampling="poisson",
        gradient_reduction="unbiased",
        target_delta=DELTA,
        unsafe_noise_seed=noise_seed,
    )


def torch_fit(data, seed, sigma, args):
    """(test accuracy, epsilon) of one Opacus fit; sigma None: plain torch."""
    Xtr, Xte, ytr, yte = data
    weights = initial_weights([Xtr.shape[1], *HIDDEN, 10], seed, np.float32)
    torch.manual_seed(seed)
    if sigma is None:
        run = TorchRun(
            *weights, Xtr, ytr, batch_size=BATCH, learning_rate=LEARNING_RATE
        )
        return run.train(args.epochs).accuracy(Xte, yte), math.inf
    run = OpacusRun(
        *weights,
        Xtr,
        ytr,
        batch_size=BATCH,
        learning_rate=LEARNING_RATE,
        noise_multiplier=sigma,
        max_grad_norm=C,
        mode=args.mode,
        seed=seed,
    )
    if not run.matches(BATCH):
        raise RuntimeError(
            f"Opacus samples at q = {run.sample_rate} and divides by "
            f"{run.expected_batch_size}, not {BATCH / len(ytr)} and {BATCH}"
        )
    run.train(args.epochs)
    return run.accuracy(Xte, yte), run.epsilon(DELTA)


def mean_se(values):
    mean = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0
    return mean, se


def epsilon_text(values):
    low, high = min(values), max(values)
    if math.isinf(low):
        return "inf"
    return f"{low:.3f}" if high - low < 5e-4 else f"{low:.3f}–{high:.3f}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke test")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--epsilons", type=float, nargs="+", default=list(EPSILONS))
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument(
        "--mode",
        choices=["hooks", "ghost"],
        default="hooks",
        help="Opacus's grad_sample_mode (same step; default hooks)",
    )
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument(
        "--no-baseline",
        action="store_true",
        help="skip the runs without privacy (epsilon = inf)",
    )
    parser.add_argument(
        "--unsafe-noise-seed",
        action="store_true",
        help="pass unsafe_noise_seed=seed to skbatchnet (reproducible, not private)",
    )
    parser.add_argument(
        "--without-skbatchnet-dp",
        action="store_true",
        help="skip skbatchnet's DP fits (for a skbatchnet without DP-SGD)",
    )
    parser.add_argument("--save", metavar="PATH", help="write the summary as CSV")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.epsilons, args.epochs = 2, [3.0], 2
    if not args.without_skbatchnet_dp:
        require_skbatchnet_dp("dp_accuracy.py")
    torch.set_num_threads(args.torch_threads)
    quiet()

    data = digits_split()
    Xtr, _, ytr, _ = data
    n = len(ytr)
    q = BATCH / n
    steps = args.epochs * math.ceil(n / BATCH)
    # Fail early if the torch model would not start where fit starts.
    check_initial_weights(Xtr, ytr, HIDDEN, 0)
    if not args.without_skbatchnet_dp:
        check_initial_weights(Xtr, ytr, HIDDEN, 0, **dp_parameters(1.0, 0))
    difference, step = check_same_step(
        Xtr, ytr, HIDDEN, max_grad_norm=C, learning_rate=LEARNING_RATE, mode=args.mode
    )

    print("\n".join(environment_lines()))
    print(environment_line())
    print(f"load average at start: {load_average()}")
    print(
        f"one clipped full-batch step without noise, skbatchnet against Opacus: "
        f"weights differ by at most {difference:.2g} (step {step:.2g})"
    )
    print(
        f"digits / 16, {n} train / {len(data[1])} test rows; network "
        f"64-{'-'.join(map(str, HIDDEN))}-10 (ReLU); sgd lr {LEARNING_RATE}, no "
        f"momentum, alpha 0; batch {BATCH} (q = {q:g}), {args.epochs} epochs, "
        f"T = {steps} steps, C = {C}, delta = {DELTA:g}; {args.seeds} seeds; "
        f"Opacus mode '{args.mode}'"
    )
    print()

    libraries = ["Opacus"] if args.without_skbatchnet_dp else ["skbatchnet", "Opacus"]
    targets = ([] if args.no_baseline else [math.inf]) + list(args.epsilons)
    results = {}  # (target, library) -> (accuracies, epsilons)
    sigmas = {}
    start = time.perf_counter()
    for target in targets:
        sigma = None
        if not math.isinf(target):
            sigma = calibrate_noise_multiplier(target, DELTA, q, steps)
        sigmas[target] = sigma
        # skbatchnet's plain fit needs no DP-SGD: the baseline runs in both.
        names = libraries if sigma is not None else ["skbatchnet", "Opacus"]
        for library in names:
            results[target, library] = ([], [])
        for seed in range(args.seeds):
            for library in names if seed % 2 == 0 else names[::-1]:
                fit = skbatchnet_fit if library == "skbatchnet" else torch_fit
                accuracy, epsilon = fit(data, seed, sigma, args)
                results[target, library][0].append(accuracy)
                results[target, library][1].append(epsilon)
        print(
            f"epsilon {target:g} done ({time.perf_counter() - start:.0f} s, "
            f"load {load_average()})",
            flush=True,
        )

    print()
    rows, csv_rows = [], []
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    for (target, library), (accuracies, epsilons) in results.items():
        mean, se = mean_se(accuracies)
        sigma = sigmas[target]
        rows.append(
            [
                f"{target:g}",
                "none" if sigma is None else f"{sigma:.4f}",
                library,
                f"{mean:.4f} ± {se:.4f}",
                epsilon_text(epsilons),
            ]
        )
        csv_rows.append(
            {
                "date": date,
                "target_epsilon": target,
                "library": library,
                "noise_multiplier": 0.0 if sigma is None else round(sigma, 6),
                "epsilon": round(statistics.fmean(epsilons), 4),
                "seeds": len(accuracies),
                "mean_accuracy": round(mean, 4),
                "stderr": round(se, 4),
                "max_gradient_norm": C if sigma is not None else "",
                "batch_size": BATCH,
                "n_train": n,
                "epochs": args.epochs,
                "steps": steps,
                "learning_rate": LEARNING_RATE,
                "target_delta": DELTA if sigma is not None else "",
            }
        )
    print("test accuracy, mean ± standard error over the seeds")
    print()
    print(
        markdown_table(
            ["target epsilon", "sigma", "library", "accuracy", "epsilon reported"],
            rows,
        )
    )
    print()
    print("epsilon reported: skbatchnet's epsilon_ (dp-accounting RDP), Opacus's")
    print("get_epsilon (its RDP accountant); dp-accounting for the calibrated sigma:")
    for target in targets:
        if sigmas[target] is not None:
            eps = dp_sgd_epsilon(sigmas[target], q, steps, DELTA)
            print(f"  target {target:g}: sigma {sigmas[target]:.4f} -> {eps:.4f}")

    if any(library == "skbatchnet" for _, library in results):
        print()
        comparison = []
        for target in targets:
            if (target, "skbatchnet") not in results:
                continue
            skb, _ = mean_se(results[target, "skbatchnet"][0])
            opa, _ = mean_se(results[target, "Opacus"][0])
            se = math.hypot(
                mean_se(results[target, "skbatchnet"][0])[1],
                mean_se(results[target, "Opacus"][0])[1],
            )
            z = (skb - opa) / se if se > 0 else math.nan
            comparison.append(
                [
                    f"{target:g}",
                    f"{skb - opa:+.4f}",
                    f"{se:.4f}",
                    f"{z:+.2f}",
                    "yes" if abs(z) <= 2 else "no",
                ]
            )
        print(
            markdown_table(
                ["target epsilon", "skb - Opacus", "SE", "in SE", "within 2 SE"],
                comparison,
            )
        )

    if args.save:
        with open(args.save, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            writer.writerows(csv_rows)
        print(f"\nwrote {args.save}")
    print()
    print(f"load average at end: {load_average()}")
    print(f"total wall time: {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
