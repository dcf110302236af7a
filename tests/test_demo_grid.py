"""The demo's grid, its failures and its description in the docs."""

import pathlib
import re

import numpy as np
import pytest
from sklearn.datasets import load_diabetes
from sklearn.model_selection import KFold, StratifiedKFold, cross_validate

import skbatchnet.__main__ as demo
from skbatchnet import BatchMLPRegressor

ROOT = pathlib.Path(__file__).resolve().parents[1]
ROW = re.compile(r"^\s*(\d+|full)\s+(mean|sum)\s+(\S+)")


# -- 16. --output is checked before any fit ------------------------------------------


@pytest.mark.parametrize("name", ["x.txt", "x", "x.png.bak"])
def test_output_with_an_unknown_format_fails_before_any_fit(tmp_path, capsys, name):
    with pytest.raises(SystemExit) as exc:
        demo.main(["--quick", "--output", str(tmp_path / name)])
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing was fitted or printed
    assert "--output" in captured.err and ".png" in captured.err, captured.err


@pytest.mark.parametrize("name", ["x.png", "x.PDF", "x.svg"])
def test_output_formats_matplotlib_writes_are_accepted(name):
    assert demo._parse_args(["--output", name]).output == name


# -- 17. 'mean' against 'sum' with plain SGD -----------------------------------------


def test_grid_trains_by_plain_sgd():
    for load in demo._LOADERS.values():
        task = load(3)
        mlp = demo._fitted_mlp(task.pipeline)  # unfitted: the last step
        assert getattr(mlp, "regressor", mlp).solver == "sgd"


@pytest.mark.parametrize("batch_size", [1, 16, "full"])
def test_sum_runs_at_one_per_example_rate(batch_size):
    """'sum' gets the same per-example rate at every batch size, so its step
    grows with the batch: the linear scaling rule the table shows."""
    lr = demo.LEARNING_RATE_INIT
    mean = {"batch_size": batch_size, "gradient_reduction": "mean"}
    total = {"batch_size": batch_size, "gradient_reduction": "sum"}
    assert demo._learning_rate(mean) == lr
    assert demo._learning_rate(total) == lr / demo.SUM_RATE_BATCH


def test_sum_at_the_per_example_rate_takes_the_steps_of_mean():
    # Where the two meet: with no short last batch, 'sum' at
    # learning_rate_init / 16 is 'mean' at learning_rate_init at batch 16.
    X, y = load_diabetes(return_X_y=True)
    X, y = (X - X.mean(0)) / X.std(0), (y - y.mean()) / y.std()
    kw = dict(solver="sgd", batch_size=16, drop_last=True, max_iter=3, random_state=0)
    lr = demo.LEARNING_RATE_INIT
    mean = BatchMLPRegressor(learning_rate_init=lr, **kw).fit(X, y)
    total = BatchMLPRegressor(
        learning_rate_init=lr / 16, gradient_reduction="sum", **kw
    )
    total.fit(X, y)
    np.testing.assert_allclose(total.loss_curve_, mean.loss_curve_, rtol=1e-10)


def _rows(out):
    return {(m[1], m[2]): m[3] for m in map(ROW.match, out.splitlines()) if m}


def test_a_diverging_candidate_is_listed_with_the_reason(monkeypatch, tmp_path, capsys):
    # At this rate the minibatch candidates diverge and the full batch does not.
    monkeypatch.setattr(demo, "LEARNING_RATE_INIT", 5.0)
    output = tmp_path / "x.png"
    assert demo.main(["--quick", "--dataset", "diabetes", "--output", str(output)]) == 0
    out = capsys.readouterr().out
    rows = _rows(out)
    assert len(rows) == 8, out
    diverged = [key for key, score in rows.items() if score == "diverged"]
    assert ("1", "mean") in diverged and ("full", "mean") not in diverged, out
    # Either rule: non-finite values, or a loss that stays above 1000 times
    # its first epoch's (with the cause).
    reasons = re.findall(
        r"^\s+diverged: (?:the loss became non-finite in epoch \d+, batch \d+"
        r"|the training loss grew to \S+ in epoch \d+, more than 1000 times "
        r"the first epoch's \S+), at learning rate [\d.e+-]+"
        r"(?:: the step is too large for this batch size and momentum)?$",
        out,
        re.M,
    )
    assert len(reasons) == len(diverged), out
    best = re.search(r"^best: batch_size='full'", out, re.M)
    assert best, out


def test_the_runaway_digits_candidate_is_listed_as_diverged():
    # Plain SGD at batch size 1, momentum 0.9 and the demo's rate: the loss
    # grows from epoch to epoch, finite, until the growth rule stops it.
    params = {
        "batch_size": 1,
        "gradient_reduction": "mean",
        "learning_rate_init": demo.LEARNING_RATE_INIT,
    }
    result = demo._evaluate(demo._digits(6), params, StratifiedKFold(2), 1)
    assert "score" not in result, result
    reason = result["diverged"]
    assert reason.startswith("diverged: the training loss grew to "), reason
    assert reason.endswith("too large for this batch size and momentum"), reason
    assert demo._row(params, result)[2] == "diverged"


def test_the_reason_is_what_a_fit_of_that_candidate_raises(monkeypatch):
    # Oracle: cross_validate on the candidate's pipeline, outside the demo.
    monkeypatch.setattr(demo, "LEARNING_RATE_INIT", 5.0)
    task = demo._diabetes(3)
    params = {"batch_size": 16, "gradient_reduction": "mean", "learning_rate_init": 5.0}
    result = demo._evaluate(task, params, KFold(2), 1)
    pipeline = task.pipeline.set_params(
        **{task.prefix + key: value for key, value in params.items()}
    )
    with pytest.raises(ValueError) as info:
        cross_validate(pipeline, task.X, task.y, cv=KFold(2), error_score="raise")
    assert result["diverged"].split(": ", 1)[1] in str(info.value)


def test_other_errors_are_not_reported_as_divergence():
    with pytest.raises(ValueError, match="something else"):
        demo._reason(ValueError("something else"))


# -- 18. the docs describe the demo ---------------------------------------------------


def test_getting_started_describes_the_demo_as_it_runs():
    text = (ROOT / "docs" / "getting_started.rst").read_text()
    section = " ".join(text.split("A first fit")[0].split())
    assert "GridSearchCV" not in section
    for word in ("cross_validate", "digits", "diabetes", "SGD", "diverged"):
        assert word in section, word
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "cross-validates" in readme and "plain SGD" in readme
