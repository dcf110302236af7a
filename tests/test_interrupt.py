"""Ctrl-C lands within a fraction of a second, whatever a step costs.

A fit runs in a child process; once its first epoch is under way in the
compiled loop, the test sends the child a real SIGINT, and the child's
handler notes when Python ran it, which is when KeyboardInterrupt is raised.
Both clocks are ``time.monotonic``, one clock for every process on Linux and
macOS. The network is wide, hidden (2000, 2000) on 100 features, so that a
step at batch size 1, or a batch of 1024 rows, is long: a loop that looked
for signals every so many steps or rows took 10 to 60 seconds to see one.

The documented bound is max(0.2 s, one matrix product): a product handed to
BLAS runs to its end. The test allows max(0.5 s, three times the largest
product of these fits, timed in the child after each one), so that a busy
machine, on which that product takes a few tenths of a second, does not fail
it.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from skbatchnet import _extension

CHILD = r"""
import json, signal, sys, time, warnings
import numpy as np
from scipy.linalg.blas import dgemm

landed = []


def note(signum, frame):
    landed.append(time.monotonic())
    raise KeyboardInterrupt


signal.signal(signal.SIGINT, note)

from skbatchnet import BatchMLPRegressor
from skbatchnet._compiled import CompiledEpochs

run = CompiledEpochs.run


def announced(self, *args):
    print("epoch", flush=True)
    return run(self, *args)


def product_seconds():
    # The fits' largest product: a chunk of 128 rows of a batch of 1024
    # through a 2000 x 2000 layer, by the BLAS the loop calls (scipy's).
    A, W = np.ones((128, 2000), order="F"), np.ones((2000, 2000), order="F")
    times = []
    for _ in range(3):
        start = time.monotonic()
        dgemm(1.0, A, W)
        times.append(time.monotonic() - start)
    return sorted(times)[1]


CompiledEpochs.run = announced
rng = np.random.RandomState(0)
X = rng.randn(20000, 100)
y = X[:, 0] + rng.randn(20000)
for batch_size in sys.argv[1:]:
    est = BatchMLPRegressor(
        hidden_layer_sizes=(2000, 2000), batch_size=int(batch_size), max_iter=1,
        learning_rate_init=1e-4, random_state=0,
    )
    landed.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.fit(X, y)
    messages = [str(w.message) for w in caught if "interrupted" in str(w.message)]
    report = dict(
        landed=landed, n_iter=est.n_iter_, warnings=messages, product=product_seconds()
    )
    print(json.dumps(report), flush=True)
"""


def _interrupt(batch_sizes):
    """For each batch size, the seconds from SIGINT to KeyboardInterrupt in
    the first compiled epoch of a fit, and those of the largest product; the
    fits run one after another in one child, which imports the package once.
    """
    cases = [str(b) for b in batch_sizes]
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, *cases], stdout=subprocess.PIPE, text=True
    )
    seconds = {}
    try:
        for batch_size in batch_sizes:
            assert child.stdout.readline() == "epoch\n"
            # Into the epoch, past its first products: it lasts many seconds.
            time.sleep(0.3)
            sent = time.monotonic()
            child.send_signal(signal.SIGINT)
            report = json.loads(child.stdout.readline())
            # Interrupted in the first epoch, which the fit rolled back.
            assert report["n_iter"] == 0
            assert report["warnings"] == [
                "Training interrupted by user; the model is kept as it was "
                "after epoch 0."
            ]
            assert len(report["landed"]) == 1
            seconds[batch_size] = (report["landed"][0] - sent, report["product"])
        assert child.wait(timeout=60) == 0
    finally:
        child.kill()
    return seconds


@pytest.mark.skipif(os.name == "nt", reason="SIGINT is a POSIX signal")
@pytest.mark.skipif(_extension.epoch_module() is None, reason="no compiled loop")
def test_ctrl_c_lands_in_the_compiled_loop_within_a_fraction_of_a_second():
    # At batch size 1 a step's matrix-vector products and update take about
    # 10 ms; a batch of 1024 rows runs in 8 chunks of 128, whose largest
    # products take a few tens of milliseconds on an idle machine of two cores.
    seconds = _interrupt([1, 1024])
    for latency, product in seconds.values():
        assert 0 < latency < max(0.5, 3 * product), seconds
