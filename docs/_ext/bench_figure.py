"""Plot the recorded training benchmark for the Performance page.

``benchmarks/bench_training.py --save docs/_data/bench_training.csv`` records
a run. When the docs are built, this extension reads that file and writes,
under ``docs/generated/performance/`` (not kept in git):

- ``bench_training.png``: time per sample against batch size, log-log, for
  scikit-learn, skbatchnet and the matrix-multiply floor, with skbatchnet's
  time per step at its smallest batch size spread over B rows, one panel per
  solver;
- ``bench_training_table.csv``: the same numbers as a table, with the ratio
  and the fraction of the matrix-multiply rate, for a ``csv-table``.

The figure and the table therefore always show the same run.
"""

import csv
from pathlib import Path

DATA = Path("_data") / "bench_training.csv"
OUTPUT = Path("generated") / "performance"
# The page shows float64, the dtype that the benchmark's targets are set for.
DTYPE = "float64"
TABLE_HEADER = [
    "solver",
    "batch",
    "scikit-learn µs",
    "skbatchnet µs",
    "ratio",
    "floor µs",
    "fraction of matmul rate",
]


def read_rows(path):
    """The recorded rows of ``DTYPE``, in the file's order."""
    with open(path, newline="") as file:
        rows = [row for row in csv.DictReader(file) if row["dtype"] == DTYPE]
    if not rows:
        raise ValueError(
            f"{path} has no {DTYPE} rows; record them with "
            "`python benchmarks/bench_training.py --dtype float64 --save "
            f"docs/{DATA.as_posix()}`."
        )
    for row in rows:
        for key in ("sklearn_us", "skbatchnet_us", "floor_us"):
            row[key] = float(row[key])
        row["n"] = int(row["n"])
        # 'full' is one batch of all n rows: that is where it goes on the axis.
        row["x"] = row["n"] if row["batch"] == "full" else int(row["batch"])
    return rows


def write_table(rows, path):
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(TABLE_HEADER)
        for row in rows:
            ours = row["skbatchnet_us"]
            writer.writerow(
                [
                    row["solver"],
                    row["batch"],
                    f"{row['sklearn_us']:.2f}",
                    f"{ours:.2f}",
                    f"{row['sklearn_us'] / ours:.2f}",
                    f"{row['floor_us']:.2f}",
                    f"{row['floor_us'] / ours:.2f}",
                ]
            )


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    solvers = list(dict.fromkeys(row["solver"] for row in rows))
    fig, axes = plt.subplots(
        1, len(solvers), figsize=(4.4 * len(solvers), 3.8), sharey=True, squeeze=False
    )
    for ax, solver in zip(axes[0], solvers):
        mine = sorted(
            (row for row in rows if row["solver"] == solver), key=lambda r: r["x"]
        )
        x = [row["x"] for row in mine]
        ax.plot(x, [r["sklearn_us"] for r in mine], "o-", label="scikit-learn")
        ax.plot(x, [r["skbatchnet_us"] for r in mine], "s-", label="skbatchnet")
        ax.plot(
            x,
            [r["floor_us"] for r in mine],
            ":",
            color="0.3",
            label="matrix-multiply floor",
        )
        # Were a step's cost the same at every batch size, the time per
        # sample would fall as 1/B from batch 1: the small batches' bound.
        step = mine[0]["skbatchnet_us"] * mine[0]["x"]
        ax.plot(
            x,
            [step / value for value in x],
            "--",
            color="0.6",
            linewidth=1,
            label=f"skbatchnet's batch-{mine[0]['batch']} step time / B",
        )
        ax.set_xscale("log")
        ax.set_yscale("log")
        # The 1/B line runs on far below the floor, where nothing is measured.
        ax.set_ylim(bottom=0.5 * min(r["floor_us"] for r in mine))
        ax.set_xticks(x, [str(row["batch"]) for row in mine])
        ax.minorticks_off()
        ax.set_xlabel("batch size")
        ax.set_title(f"solver='{solver}'")
        ax.grid(True, which="major", alpha=0.3)
    axes[0][0].set_ylabel("µs per sample per epoch")
    axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize="small")
    first = rows[0]
    threads = first["blas_threads"]
    fig.suptitle(
        f"{DTYPE}, median of {first['repeats']} fits, BLAS threads: {threads}, "
        f"recorded {first['date']}",
        fontsize="medium",
    )
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def build(app):
    source = Path(app.srcdir)
    output = source / OUTPUT
    output.mkdir(parents=True, exist_ok=True)
    rows = read_rows(source / DATA)
    plot(rows, output / "bench_training.png")
    write_table(rows, output / "bench_training_table.csv")


def setup(app):
    app.connect("builder-inited", build)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
