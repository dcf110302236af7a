"""Restart: training pickled and continued in a fresh process is bitwise the
same as training that never stopped (weights, optimizer state, random stream).
"""

import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import (
    SMALL,
    Snapshot,
    bitwise_equal,
    copied_weights,
    make_data,
)

from skbatchnet import BatchMLPClassifier, BatchMLPRegressor

_CONTINUE = textwrap.dedent(
    """
    import pickle
    import sys
    from pathlib import Path

    import numpy as np

    for folder in map(Path, sys.argv[1:]):
        mode, count = (folder / "task.txt").read_text().split()
        est = pickle.loads((folder / "model.pkl").read_bytes())
        if mode == "partial_fit":
            for i in range(int(count)):
                X = np.load(folder / f"X_{i}.npy")
                y = np.load(folder / f"y_{i}.npy")
                est.partial_fit(X, y)
        else:
            est.set_params(max_iter=int(count))
            est.fit(np.load(folder / "X_0.npy"), np.load(folder / "y_0.npy"))
        for i, a in enumerate(est.coefs_ + est.intercepts_):
            np.save(folder / f"weight_{i}.npy", a)
        (folder / "result.pkl").write_bytes(pickle.dumps(est))
    """
)


def _restart_data(kind):
    X, y_reg, y_cls = make_data(n=90, seed=5, labels="balanced")
    if kind == "classifier":
        return X, np.array(["cat", "dog", "emu"])[y_cls]
    return X, y_reg


def _estimator(kind, **params):
    Est = BatchMLPClassifier if kind == "classifier" else BatchMLPRegressor
    return Est(batch_size=8, shuffle=True, momentum=0.9, **params, **SMALL)


RESTARTS = {
    # name: (kind, solver, mode); "partial_fit" pickles after two calls and
    # continues with three more, "fit" pickles a warm-start fit and fits again
    **{
        f"partial_fit-{kind}-{solver}": (kind, solver, "partial_fit")
        for kind in ("classifier", "regressor")
        for solver in ("sgd", "adam")
    },
    "fit-classifier-adam": ("classifier", "adam", "fit"),
    "fit-regressor-sgd": ("regressor", "sgd", "fit"),
}


@pytest.fixture(scope="module")
def restarted(tmp_path_factory):
    """Every scenario of RESTARTS continued in one fresh Python process.

    Returns, per scenario, the estimator as it was pickled (to be continued
    in this process by the test), the data to continue with, and the weights
    and the estimator the fresh process ended with.
    """
    cases, folders = {}, []
    for name, (kind, solver, mode) in RESTARTS.items():
        folder = tmp_path_factory.mktemp(name)
        X, y = _restart_data(kind)
        if mode == "partial_fit":
            chunks = [(X[i::3], y[i::3]) for i in range(3)]
            est = _estimator(kind, solver=solver)
            kw = {"classes": np.unique(y)} if kind == "classifier" else {}
            est.partial_fit(X, y, **kw).partial_fit(*chunks[2])
            count = 3
        else:
            chunks = [(X, y)]
            est = _estimator(kind, solver=solver, max_iter=3, warm_start=True)
            est.fit(X, y)
            count = 4
        (folder / "model.pkl").write_bytes(pickle.dumps(est))
        (folder / "task.txt").write_text(f"{mode} {count}")
        for i, (X_i, y_i) in enumerate(chunks):
            np.save(folder / f"X_{i}.npy", X_i)
            np.save(folder / f"y_{i}.npy", y_i)
        cases[name] = (est, chunks, count, folder)
        folders.append(str(folder))
    script = tmp_path_factory.mktemp("script") / "continue.py"
    script.write_text(_CONTINUE)
    done = subprocess.run(
        [sys.executable, "-W", "ignore", str(script), *folders],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    results = {}
    for name, (est, chunks, count, folder) in cases.items():
        n = len(est.coefs_) + len(est.intercepts_)
        weights = [np.load(folder / f"weight_{i}.npy") for i in range(n)]
        restored = pickle.loads((folder / "result.pkl").read_bytes())
        results[name] = (est, chunks, count, weights, restored)
    return results


@pytest.mark.parametrize("name", sorted(RESTARTS))
def test_training_continues_bitwise_in_a_fresh_process(restarted, name):
    # Pickle, continue in a fresh process: the same weights, bit for bit, and
    # the same optimizer state and random stream, as never stopping.
    est, chunks, count, weights, restored = restarted[name]
    if RESTARTS[name][2] == "partial_fit":
        for X, y in chunks:
            est.partial_fit(X, y)
    else:
        est.set_params(max_iter=count).fit(*chunks[0])
    assert bitwise_equal(weights, copied_weights(est))
    Snapshot(est).assert_matches(restored)
    assert est.n_iter_ == (count if RESTARTS[name][2] == "fit" else 2 + count)
