"""Time privacy accounting: epsilon and calibration, RDP against PLD.

For T = 10^3, 10^4 and 10^5 steps of DP-SGD at the TensorFlow Privacy
tutorial's sampling rate (256 / 60000) and delta = 1e-5, prints the time of
``dp_sgd_epsilon`` (noise multiplier 1.1) and of
``calibrate_noise_multiplier`` (to the epsilon RDP gives at sigma 1.1), for
both accountants, with the epsilons and sigmas they find and PLD's time as
a multiple of RDP's. Needs dp-accounting (``pip install ".[privacy]"``).

    python benchmarks/bench_privacy.py            # about two minutes
    python benchmarks/bench_privacy.py --quick    # T = 10^3 only, one repeat
"""

import argparse
import logging
import time
import warnings
from functools import partial

from _report import environment_lines, markdown_table

from skbatchnet.privacy import calibrate_noise_multiplier, dp_sgd_epsilon

SAMPLE_RATE = 256 / 60000
SIGMA = 1.1
DELTA = 1e-5


def best_time(call, repeats):
    """The fastest of ``repeats`` calls, in seconds, and the call's result."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - start)
    return min(times), result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    all_steps = [10**3] if args.quick else [10**3, 10**4, 10**5]
    repeats = 1 if args.quick else args.repeats
    # dp-accounting logs (absl) and warns about RDP orders it drops; the
    # timings are what this script reports.
    logging.getLogger("absl").setLevel(logging.ERROR)
    warnings.simplefilter("ignore", RuntimeWarning)

    # The first call imports dp-accounting; no timing should include that.
    dp_sgd_epsilon(SIGMA, SAMPLE_RATE, 1, DELTA)

    print("\n".join(environment_lines()))
    print(f"sample_rate = 256/60000, delta = {DELTA}; best of {repeats}\n")
    rows = []
    for steps in all_steps:
        timed = {}
        for accountant in ("rdp", "pld"):
            call = partial(
                dp_sgd_epsilon, SIGMA, SAMPLE_RATE, steps, DELTA, accountant=accountant
            )
            timed[accountant, "eps"] = best_time(call, repeats)
        target = timed["rdp", "eps"][1]
        for accountant in ("rdp", "pld"):
            # Calibration is slow with PLD; one run is enough to time it.
            call = partial(
                calibrate_noise_multiplier,
                target,
                DELTA,
                SAMPLE_RATE,
                steps,
                accountant=accountant,
            )
            timed[accountant, "cal"] = best_time(call, 1)
        for what, label in (("eps", "epsilon at sigma 1.1"), ("cal", "calibrate")):
            rdp_time, rdp_value = timed["rdp", what]
            pld_time, pld_value = timed["pld", what]
            rows.append(
                [
                    f"{steps:.0e}",
                    label,
                    f"{rdp_time * 1e3:.0f} ms",
                    f"{pld_time * 1e3:.0f} ms",
                    f"{pld_time / rdp_time:.1f}x",
                    f"{rdp_value:.4f}",
                    f"{pld_value:.4f}",
                ]
            )
    headers = ["T", "call", "rdp", "pld", "pld / rdp", "rdp value", "pld value"]
    print(markdown_table(headers, rows))


if __name__ == "__main__":
    main()
