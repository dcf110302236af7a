"""The portable build runs where AVX2 is missing: forced here on any CPU.

``SKBATCHNET_NO_AVX2=1`` makes :mod:`skbatchnet._extension` keep the epoch
compiled for the baseline instruction set even on a CPU with AVX2, as it does
on a CPU without. A fresh interpreter, started with and without the switch,
fits the same model through the compiled loop: the switch picks the portable
module, and both modules compute the same bits. ``.ci/wheel`` runs this
against an installed wheel, where both modules come from the wheel.
"""

import os
import pathlib
import pickle
import subprocess
import sys

import numpy as np
import pytest

import skbatchnet
from skbatchnet import _extension

FIT = """
import pickle, sys
from sklearn.datasets import load_digits
from skbatchnet import BatchMLPClassifier, _extension

X, y = load_digits(return_X_y=True)
model = BatchMLPClassifier((24,), batch_size=8, max_iter=2, random_state=0)
model.fit(X[:200] / 16, y[:200])
module = _extension.epoch_module()[0].__name__
sys.stdout.buffer.write(pickle.dumps((module, model.coefs_ + model.intercepts_)))
"""


def _fit_in_a_fresh_interpreter(no_avx2):
    env = dict(os.environ)
    env.pop("SKBATCHNET_NO_AVX2", None)
    if no_avx2:
        env["SKBATCHNET_NO_AVX2"] = "1"
    # The skbatchnet this test imported, from a source tree or site-packages.
    where = str(pathlib.Path(skbatchnet.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([where, env.get("PYTHONPATH", "")])
    run = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", FIT],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr.decode()
    return pickle.loads(run.stdout)


@pytest.mark.skipif(_extension.epoch_module() is None, reason="extension not built")
def test_the_forced_portable_module_runs_and_computes_the_same_bits():
    forced, forced_weights = _fit_in_a_fresh_interpreter(no_avx2=True)
    chosen, weights = _fit_in_a_fresh_interpreter(no_avx2=False)
    assert forced == "skbatchnet._epoch"
    assert chosen in ("skbatchnet._epoch", "skbatchnet._epoch_avx2")
    for a, b in zip(forced_weights, weights, strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)
