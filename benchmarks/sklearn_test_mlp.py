"""Run scikit-learn's own ``test_mlp.py`` against skbatchnet's estimators.

The test file of the installed scikit-learn
(``sklearn/neural_network/tests/test_mlp.py``) is copied to a temporary
directory, its import of ``MLPClassifier`` and ``MLPRegressor`` is rewritten
to import :class:`skbatchnet.BatchMLPClassifier` and
:class:`skbatchnet.BatchMLPRegressor` under those names, and pytest runs it
(with scikit-learn's ``conftest.py`` loaded as a plugin, for its fixtures).
The failures are then grouped by cause.

Nothing of scikit-learn's file is kept in this repository: it is read from
the installed package at every run, so the check follows the scikit-learn
version installed.

The drop-in promise is that every test passes except those that reach into
scikit-learn's private attributes, which our estimators do not have (they
keep their training state in other objects). With scikit-learn 1.9 those
are the four of ``EXPECTED``:

- ``test_fit`` fakes a fitted model by setting scikit-learn's private
  training state (``_coef_velocity``, ``_no_improvement_count``...) and then
  calls ``partial_fit``; that fake is not a fitted model of ours (it has no
  ``classes_``), so the call fails on ``classes_``;
- ``test_gradient`` calls the private ``_loss_grad_lbfgs`` (our gradients are
  checked against finite differences in tests/test_backprop.py);
- ``test_n_iter_no_change`` and ``test_n_iter_no_change_inf`` read the
  private ``_no_improvement_count``.

The script exits with status 1 when a test outside ``EXPECTED`` fails, or
when one in it passes (so that the list stays true).

Usage::

    python benchmarks/sklearn_test_mlp.py [-k EXPRESSION] [-x]

Extra arguments go to pytest.
"""

import os
import pathlib
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import defaultdict

import sklearn

# The tests that may fail, each with why; every other test must pass.
EXPECTED = {
    "test_fit": "sets scikit-learn's private training state to fake a fitted model",
    "test_gradient": "calls scikit-learn's private _loss_grad_lbfgs",
    "test_n_iter_no_change": "reads scikit-learn's private _no_improvement_count",
    "test_n_iter_no_change_inf": "reads scikit-learn's private _no_improvement_count",
}

IMPORT = "from sklearn.neural_network import MLPClassifier, MLPRegressor"
OURS = (
    "from skbatchnet import BatchMLPClassifier as MLPClassifier, "
    "BatchMLPRegressor as MLPRegressor"
)


def test_file():
    """The installed scikit-learn's test_mlp.py, as text."""
    root = pathlib.Path(sklearn.__file__).parent
    return (root / "neural_network" / "tests" / "test_mlp.py").read_text()


def rewritten(source):
    """``source`` testing our estimators under scikit-learn's names."""
    if source.count(IMPORT) != 1:
        raise SystemExit(
            f"scikit-learn {sklearn.__version__}'s test_mlp.py no longer imports "
            f"the estimators as `{IMPORT}`; update this script's IMPORT."
        )
    return source.replace(IMPORT, OURS)


def run(pytest_args=()):
    """Run the rewritten file; returns ``{test id: (outcome, message)}``."""
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "test_mlp_skbatchnet.py"
        path.write_text(rewritten(test_file()))
        report = pathlib.Path(tmp) / "report.xml"
        command = [
            sys.executable,
            "-m",
            "pytest",
            str(path),
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "sklearn.conftest",
            f"--junitxml={report}",
            "--tb=line",
            "-W",
            "ignore::sklearn.exceptions.ConvergenceWarning",
            *pytest_args,
        ]
        # The temporary directory is the rootdir: no project configuration
        # (ours or scikit-learn's) applies to the copied file.
        subprocess.run(command, cwd=tmp, env=os.environ.copy(), check=False)
        return outcomes(report)


def outcomes(report):
    results = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        name = case.get("name")
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        if problem is not None:
            results[name] = ("failed", problem.get("message") or "")
        elif case.find("skipped") is not None:
            results[name] = ("skipped", "")
        else:
            results[name] = ("passed", "")
    return results


PRIVATE = re.compile(r"has no attribute '(_\w+)'")


def cause(message):
    """A short label for a failure's message."""
    private = PRIVATE.search(message)
    if private:
        return f"reads scikit-learn's private attribute {private.group(1)}"
    if "Regex pattern did not match" in message or "does not match" in message:
        return "message wording"
    return message.splitlines()[0][:120] if message else "unknown"


def summarize(results):
    """Print the failures by cause; returns the exit status."""
    counts = defaultdict(int)
    for outcome, _ in results.values():
        counts[outcome] += 1
    print(
        f"\nscikit-learn {sklearn.__version__}'s test_mlp.py against skbatchnet: "
        + ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
    )
    by_cause = defaultdict(list)
    for name, (outcome, message) in sorted(results.items()):
        if outcome == "failed":
            why = EXPECTED.get(_base(name))
            by_cause[f"expected: {why}" if why else cause(message)].append(name)
    for why, names in sorted(by_cause.items()):
        print(f"\n{why} ({len(names)}):")
        for name in names:
            print(f"  {name}")
    unexpected = [
        name
        for name, (outcome, _) in results.items()
        if outcome == "failed" and _base(name) not in EXPECTED
    ]
    fixed = sorted(
        base
        for base in EXPECTED
        if any(
            _base(name) == base and outcome != "failed"
            for name, (outcome, _) in results.items()
        )
    )
    if unexpected:
        print(f"\n{len(unexpected)} failure(s) outside EXPECTED.")
    if fixed:
        print(f"\nIn EXPECTED but passed: {', '.join(fixed)}; update EXPECTED.")
    return 1 if unexpected or fixed else 0


def _base(name):
    """A test's name without its parametrization."""
    return name.split("[")[0]


if __name__ == "__main__":
    sys.exit(summarize(run(sys.argv[1:])))
