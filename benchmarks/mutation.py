"""Mutation testing of the core and training modules, one module at a time.

Run from the repository root::

    python benchmarks/mutation.py                 # every module, smallest first
    python benchmarks/mutation.py reduction batching
    python benchmarks/mutation.py --summary       # print the last results only

mutmut (configured in ``[tool.mutmut]`` of pyproject.toml) copies the package
into ``mutants/``, makes one small change at a time in the modules below
(``<`` to ``<=``, ``+`` to ``-``, a constant plus one, an argument dropped...)
and runs the fast test files of those modules against each change. A change
that no test notices ("survived") is either a hole in the tests or an
equivalent mutant; see docs/developing.rst for how to tell them apart.

mutmut is not a dependency of the package nor of the test extra: this script
installs it on demand into the running environment (``pip install
"mutmut>=3.8,<4"``). It needs ``fork``, so it runs on Linux and macOS only.

Results are kept in ``mutants/`` between runs: ``mutmut results`` lists the
survivors, ``mutmut show NAME`` prints one as a diff, and ``mutmut apply
NAME`` writes it into the working tree (revert it with git).
"""

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Smallest first, so that a run cut short still covers whole modules.
MODULES = (
    "_noise_scale",
    "_threads",
    "_outcome",
    "_step",
    "reduction",
    "_private",
    "_rollback",
    "_lbfgs",
    "_compiled",
    "batching",
    "_optimizers",
    "_training",
    "schedules",
    "backprop",
)

# mutmut's exit codes per mutant, grouped as the summary reports them.
STATUS = {
    1: "killed",
    3: "killed",
    0: "survived",
    36: "timeout",
    24: "timeout",
    -24: "timeout",
    152: "timeout",
    255: "timeout",
    5: "no tests",
    33: "no tests",
    34: "skipped",
    None: "not run",
}
COLUMNS = (
    "generated",
    "killed",
    "survived",
    "timeout",
    "no tests",
    "not run",
    "other",
)


def ensure_mutmut():
    if importlib.util.find_spec("mutmut") is None:
        print("mutmut is not installed; installing it into this environment.")
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "mutmut>=3.8,<4"],
            check=True,
        )


def mutmut_command():
    # The console script sits next to the interpreter in a virtualenv.
    script = Path(sys.executable).with_name("mutmut")
    return [str(script)] if script.exists() else ["mutmut"]


def results(module):
    meta = ROOT / "mutants" / "skbatchnet" / f"{module}.py.meta"
    if not meta.exists():
        return None
    codes = json.loads(meta.read_text())["exit_code_by_key"]
    counts = Counter(STATUS.get(code, "other") for code in codes.values())
    counts["generated"] = len(codes)
    survivors = sorted(name for name, code in codes.items() if code == 0)
    return counts, survivors


def summary(modules, seconds):
    header = f"{'module':<14}" + "".join(f"{c:>10}" for c in COLUMNS)
    header += f"{'s/mutant':>10}"
    print(header)
    print("-" * len(header))
    total = Counter()
    survivors = []
    for module in modules:
        found = results(module)
        if found is None:
            print(f"{module:<14}  not run")
            continue
        counts, names = found
        if counts["not run"] == counts["generated"]:
            # Generated with another module's run, never tested.
            print(f"{module:<14}  not run")
            continue
        total.update(counts)
        survivors += names
        per = seconds.get(module)
        per = f"{per / max(counts['generated'], 1):.2f}" if per else "-"
        print(
            f"{module:<14}"
            + "".join(f"{counts[c]:>10}" for c in COLUMNS)
            + f"{per:>10}"
        )
    print("-" * len(header))
    print(f"{'total':<14}" + "".join(f"{total[c]:>10}" for c in COLUMNS))
    if survivors:
        print("\nSurviving mutants (inspect with `mutmut show NAME`):")
        for name in survivors:
            print(f"  {name}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "modules",
        nargs="*",
        default=MODULES,
        help=f"modules of skbatchnet to mutate (default: {' '.join(MODULES)})",
    )
    parser.add_argument(
        "--max-children",
        type=int,
        default=1,
        help="mutants tested in parallel (default 1: the machine may be shared)",
    )
    parser.add_argument(
        "--summary",
        action="store_true",
        help="print the results of earlier runs without running anything",
    )
    args = parser.parse_args()
    unknown = sorted(set(args.modules) - set(MODULES))
    if unknown:
        parser.error(
            f"modules {unknown} are not configured for mutation testing; "
            f"choose among {list(MODULES)}."
        )
    modules = [m for m in MODULES if m in args.modules]

    seconds = {}
    if not args.summary:
        ensure_mutmut()
        for module in modules:
            # mutmut's progress spinner goes to a log, not to the terminal.
            log = ROOT / "mutants" / f"run-{module}.log"
            log.parent.mkdir(exist_ok=True)
            print(f"mutating skbatchnet/{module}.py (log: {log})", flush=True)
            start = time.perf_counter()
            with log.open("w") as out:
                subprocess.run(
                    [
                        *mutmut_command(),
                        "run",
                        "--max-children",
                        str(args.max_children),
                        f"skbatchnet.{module}.*",
                    ],
                    cwd=ROOT,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    check=False,
                )
            seconds[module] = time.perf_counter() - start
            print(f"  done in {seconds[module]:.0f} s", flush=True)
    print()
    summary(modules, seconds)


if __name__ == "__main__":
    main()
