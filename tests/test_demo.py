"""Tests of the demo, ``python -m skbatchnet``."""

import math
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_digits
from sklearn.model_selection import KFold, StratifiedKFold

import skbatchnet.__main__ as demo
from skbatchnet.__main__ import main

CANDIDATES = [
    (batch_size, reduction)
    for batch_size in ["1", "16", "64", "full"]
    for reduction in ["mean", "sum"]
]
DATASETS = ["digits", "diabetes"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# batch_size, reduction, score, sd, fit time, epochs, steps/fit
ROW = re.compile(
    r"^\s*(?P<batch_size>\d+|full)\s+(?P<reduction>mean|sum)\s+"
    r"(?P<score>-?\d+\.\d{4})\s+(?P<sd>\d+\.\d{4})\s+(?P<time>\d+\.\d{2})\s+"
    r"(?P<epochs>[\d,.]+)\s+(?P<steps>[\d,.]+)\s*$"
)
BEST = re.compile(
    r"^best: batch_size=(?:'(?P<full>full)'|(?P<size>\d+)), "
    r"gradient_reduction='(?P<reduction>mean|sum)' "
    r"\(mean CV (?P<name>accuracy|R\^2) (?P<score>-?\d+\.\d{4})\)$"
)


def _number(text):
    return float(text.replace(",", ""))


def _quick_train_sizes(name):
    """Training rows of each fold of --quick's 2-fold CV of a data set."""
    if name == "digits":
        X, y = load_digits(return_X_y=True)
        cv = StratifiedKFold(2)
    else:
        X, y = load_diabetes(return_X_y=True)
        cv = KFold(2)
    return [len(train) for train, _ in cv.split(X, y)]


def _sections(out):
    """The output of each data set, from its "== name:" header to the next."""
    parts = re.split(r"^== (\w+):", out, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2]))


def _check_section(name, text):
    rows = [m for m in map(ROW.match, text.splitlines()) if m]
    found = [(m["batch_size"], m["reduction"]) for m in rows]
    assert found == CANDIDATES, text

    n_train = _quick_train_sizes(name)
    for m in rows:
        if name == "digits":
            assert 0.0 <= float(m["score"]) <= 1.0
        else:
            assert float(m["score"]) <= 1.0  # R^2, negative when poor
        # --quick runs 3 epochs, too few for the tol-based stopping to act.
        assert _number(m["epochs"]) == 3
        # Steps: 3 epochs of ceil(n_train / batch_size) batches, fold mean.
        size = m["batch_size"]
        per_epoch = [1 if size == "full" else math.ceil(n / int(size)) for n in n_train]
        assert _number(m["steps"]) == 3 * np.mean(per_epoch)

    # 'sum' runs at one per-example rate, 1/16 of 'mean''s rate at batch 1:
    # there the two take steps of different lengths and end elsewhere.
    by_candidate = {(m["batch_size"], m["reduction"]): m for m in rows}
    assert by_candidate["1", "mean"]["score"] != by_candidate["1", "sum"]["score"]

    best = [m for m in map(BEST.match, text.splitlines()) if m]
    assert len(best) == 1, text
    best = best[0]
    assert best["name"] == ("accuracy" if name == "digits" else "R^2")
    row = by_candidate[best["full"] or best["size"], best["reduction"]]
    assert row["score"] == best["score"]
    assert float(best["score"]) == max(float(m["score"]) for m in rows)


def test_quick_run_prints_a_table_per_data_set_and_writes_a_png(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    output = tmp_path / "x.png"
    filters_before = list(warnings.filters)

    assert main(["--quick", "--output", str(output)]) == 0
    out = capsys.readouterr().out

    # The ConvergenceWarning filter stays inside main.
    assert warnings.filters == filters_before

    sections = _sections(out)
    assert list(sections) == DATASETS, out
    for name, text in sections.items():
        _check_section(name, text)

    assert f"wrote {output}" in out
    data = output.read_bytes()
    assert len(data) > len(PNG_SIGNATURE)
    assert data.startswith(PNG_SIGNATURE)
    assert "matplotlib not installed" not in out


def test_quick_run_without_matplotlib_says_how_to_get_the_png(
    capsys, tmp_path, monkeypatch
):
    # A None entry in sys.modules makes `import matplotlib` raise ImportError.
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    output = tmp_path / "x.png"

    assert main(["--quick", "--dataset", "diabetes", "--output", str(output)]) == 0
    out = capsys.readouterr().out

    assert list(_sections(out)) == ["diabetes"], out
    _check_section("diabetes", _sections(out)["diabetes"])
    message = [line for line in out.splitlines() if "matplotlib" in line]
    assert message == [
        "matplotlib not installed: pip install 'skbatchnet[plot]' to get x.png"
    ], out
    assert not output.exists()
    assert list(tmp_path.iterdir()) == []


def test_missing_output_directory_is_an_error_before_any_fit(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--quick", "--output", str(tmp_path / "missing" / "x.png")])
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert "does not exist" in captured.err
    assert captured.out == ""


def test_help_exits_zero_and_lists_the_options():
    proc = subprocess.run(
        [sys.executable, "-m", "skbatchnet", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "usage:" in proc.stdout
    options = ["--dataset", "--output", "--n-jobs", "--quick", "--max-iter", "--cv"]
    for option in options:
        assert option in proc.stdout, proc.stdout
    assert "{digits,diabetes,both}" in proc.stdout


def _stated_rates(header):
    """The learning rates the header states for 'mean' and for 'sum'."""
    text = " ".join(header.split())
    mean = re.search(r"'mean' steps at learning_rate_init=([\d.e-]+);", text)
    total = re.search(
        r"'sum' .*?runs at learning_rate_init=([\d.e-]+) / (\d+) at every batch size",
        text,
    )
    assert mean and total, text
    return float(mean[1]), float(total[1]) / int(total[2])


def test_the_header_states_the_rates_the_candidates_train_at(monkeypatch, capsys):
    # Oracle: the parameters of the pipelines the demo hands to
    # cross_validate, read off the pipelines (no fit needed).
    configured = []

    def cross_validate(pipeline, X, y, cv, **kwargs):
        params = pipeline.get_params()
        configured.append(
            {
                key.rsplit("__", 1)[1]: value
                for key, value in params.items()
                if key.endswith(("__learning_rate_init", "__gradient_reduction"))
            }
        )
        zeros = np.zeros(cv.get_n_splits())
        return {f"test_{k}": zeros for k in kwargs["scoring"]} | {"fit_time": zeros}

    monkeypatch.setattr(demo, "cross_validate", cross_validate)
    monkeypatch.setattr(demo, "_loss_curves", lambda tasks, args: None)
    assert demo.main(["--quick"]) == 0
    header = capsys.readouterr().out.split("== ")[0]
    mean, total = _stated_rates(header)
    rates = {"mean": [], "sum": []}
    for params in configured:
        rates[params["gradient_reduction"]].append(params["learning_rate_init"])
    # 2 data sets x 4 batch sizes each, all at the rate the header states.
    assert rates["mean"] == pytest.approx([mean] * 8)
    assert rates["sum"] == pytest.approx([total] * 8)
