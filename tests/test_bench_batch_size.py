"""``benchmarks/bench_batch_size.py``: its verdicts, and a smoke run.

The verdicts are checked on made-up fits (no training), so that the targets
the script prints are the issue's: within 2 standard errors and 0.01 of the
grid's best, within 2 standard errors of the fixed 200, at most 1.5 times
the best's fit time. The smoke run (``--quick``, one small data set) checks
that the script runs end to end and writes its CSV.
"""

import csv
import importlib
import pathlib

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    return importlib.import_module("bench_batch_size")


def made_up_fits(bench, scores, seconds, n_fits=10):
    """Fits of every candidate: ``scores[c] + noise`` and ``seconds[c]``."""
    noise = np.random.RandomState(0).normal(scale=0.004, size=n_fits)
    curve = [1.0, np.inf, np.nan]
    return {
        c: [
            bench.Fit(
                scores[c] + e,
                seconds[c],
                100,
                0.1,
                [8, 16, 32],
                curve,
                [0.1, -0.1, np.nan],
                [1.0, 1.0, np.nan],
            )  # fmt: skip
            for e in noise
        ]
        for c in bench.CANDIDATES
    }


def verdicts(bench, fits, capsys):
    dataset = bench.DataSet("made_up", "classification", 3, 2, None)
    rows = bench.summarize(dataset, fits, n_train=1000)
    (adaptive,) = [row for row in rows if row["batch_size"] == "adaptive"]
    (best,) = [row for row in rows if row["best"]]
    return adaptive["verdicts"].split(), best["batch_size"], capsys.readouterr().out


def test_adaptive_as_good_and_as_fast_as_the_best_passes(bench, capsys):
    scores = dict.fromkeys(bench.CANDIDATES, 0.90) | {8: 0.95, "adaptive": 0.95}
    seconds = dict.fromkeys(bench.CANDIDATES, 1.0)
    result, best, out = verdicts(bench, made_up_fits(bench, scores, seconds), capsys)
    assert best == 8
    assert result == ["PASS", "PASS", "PASS"]
    assert "a target was missed" not in out


def test_each_target_fails_on_its_own(bench, capsys):
    # 0.02 below the best, 0.02 below the fixed 200, 2 times slower.
    scores = dict.fromkeys(bench.CANDIDATES, 0.90) | {32: 0.95, 200: 0.95}
    scores["adaptive"] = 0.93
    seconds = dict.fromkeys(bench.CANDIDATES, 1.0) | {"adaptive": 2.0}
    result, best, out = verdicts(bench, made_up_fits(bench, scores, seconds), capsys)
    assert best == 32  # the grid's best: 200 is a reference, not a candidate
    assert result == ["FAIL", "FAIL", "FAIL"]
    # Where a target is missed, the noise-scale curve is printed.
    assert "a target was missed" in out and "| inf " in out


def test_the_score_gap_is_capped_at_a_hundredth(bench, capsys):
    # A spread so large that 2 standard errors exceed 0.01: 0.015 below fails.
    scores = dict.fromkeys(bench.CANDIDATES, 0.90) | {8: 0.95, "adaptive": 0.935}
    seconds = dict.fromkeys(bench.CANDIDATES, 1.0)
    fits = made_up_fits(bench, scores, seconds)
    for fit, shift in zip(
        fits[8], np.random.RandomState(1).normal(scale=0.05, size=10)
    ):
        fit.score += shift
    result, _, _ = verdicts(bench, fits, capsys)
    assert result[0] == "FAIL"


def test_quick_run_writes_the_csv(bench, tmp_path, capsys):
    path = tmp_path / "bench_batch_size.csv"
    bench.main(["--quick", "--datasets", "diabetes", "--save", str(path)])
    out = capsys.readouterr().out
    assert "## diabetes" in out and "total wall time" in out
    with open(path, encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert [row["batch_size"] for row in rows] == [str(c) for c in bench.CANDIDATES]
    assert {row["metric"] for row in rows} == {"R^2"}
