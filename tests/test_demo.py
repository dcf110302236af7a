"""Tests of the demo, ``python -m skbatchnet``."""

import math
import re
import subprocess
import sys
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import StratifiedKFold

from skbatchnet.__main__ import main

CANDIDATES = [
    (batch_size, reduction)
    for batch_size in ["1", "16", "64", "full"]
    for reduction in ["mean", "sum"]
]

# batch_size, reduction, accuracy, sd, fit time, epochs, steps/fit, rank
ROW = re.compile(
    r"^\s*(?P<batch_size>\d+|full)\s+(?P<reduction>mean|sum)\s+"
    r"(?P<accuracy>\d\.\d{4})\s+(?P<sd>\d\.\d{4})\s+(?P<time>\d+\.\d{2})\s+"
    r"(?P<epochs>[\d,.]+)\s+(?P<steps>[\d,.]+)\s+(?P<rank>\d+)\s*$"
)


def _number(text):
    return float(text.replace(",", ""))


def _quick_train_sizes():
    """Training rows of each fold of --quick's 2-fold stratified CV."""
    X, y = load_digits(return_X_y=True)
    return [len(train) for train, _ in StratifiedKFold(2).split(X, y)]


def test_quick_run_prints_a_row_per_candidate_and_the_best(capsys):
    filters_before = list(warnings.filters)

    assert main(["--quick"]) == 0
    out = capsys.readouterr().out

    # The ConvergenceWarning filter stays inside main.
    assert warnings.filters == filters_before

    rows = [m for m in map(ROW.match, out.splitlines()) if m]
    found = [(m["batch_size"], m["reduction"]) for m in rows]
    assert sorted(found) == sorted(CANDIDATES), out

    n_train = _quick_train_sizes()
    for m in rows:
        assert 0.0 <= float(m["accuracy"]) <= 1.0
        assert 1 <= int(m["rank"]) <= len(CANDIDATES)
        # --quick runs 3 epochs, too few for the tol-based stopping to act.
        assert _number(m["epochs"]) == 3
        # Steps: 3 epochs of ceil(n_train / batch_size) batches, fold mean.
        size = m["batch_size"]
        per_epoch = [1 if size == "full" else math.ceil(n / int(size)) for n in n_train]
        assert _number(m["steps"]) == 3 * np.mean(per_epoch)

    # With one row per batch, 'mean' and 'sum' take the very same steps.
    by_candidate = {(m["batch_size"], m["reduction"]): m for m in rows}
    assert by_candidate["1", "mean"]["accuracy"] == by_candidate["1", "sum"]["accuracy"]

    best = [line for line in out.splitlines() if line.startswith("best:")]
    assert len(best) == 1, out
    match = re.search(
        r"batch_size=(?:'(full)'|(\d+)), gradient_reduction='(mean|sum)'", best[0]
    )
    assert match, best[0]
    full, size, reduction = match.groups()
    assert by_candidate[full or size, reduction]["rank"] == "1"


def test_help_exits_zero():
    proc = subprocess.run(
        [sys.executable, "-m", "skbatchnet", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "--quick" in proc.stdout
    assert "usage:" in proc.stdout
