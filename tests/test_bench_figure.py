"""The CSV of ``bench_training.py --save`` is what the Performance page plots.

The benchmark script writes the file and a docs extension reads it; these
tests run both on made-up fit times (no fit, no browser) and compare the
page's table with per-sample times worked out here by hand.
"""

import csv
import importlib
import pathlib
import types

import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("threadpoolctl")

ROOT = pathlib.Path(__file__).resolve().parents[1]
# One forward and backward pass of the benchmark's (64, 128, 128, 10) network:
# three products of 2 * fan_in * fan_out operations per layer.
FLOPS = 6 * (64 * 128 + 128 * 128 + 128 * 10)
RATE = 2e9  # matrix-multiply rate handed to the writer, FLOP/s


@pytest.fixture
def scripts(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    monkeypatch.syspath_prepend(str(ROOT / "docs" / "_ext"))
    return (
        importlib.import_module("bench_training"),
        importlib.import_module("bench_figure"),
    )


def save(bench, path, rows, epochs=2):
    settings = bench.Settings(
        n_samples=1000, n_small=100, epochs=epochs, repeats=3, gemm_repeats=1
    )
    measured = {
        (solver, dtype, batch): bench.Measurement(
            solver, dtype, batch, n, epochs, (them,), (us,), (RATE,)
        )
        for solver, dtype, batch, n, them, us in rows
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    bench.save_csv(path, measured, settings, 3, None)


def test_page_table_and_figure_come_from_the_saved_run(scripts, tmp_path):
    bench, figure = scripts
    # (solver, dtype, batch, rows, sklearn seconds per fit, skbatchnet seconds)
    save(
        bench,
        tmp_path / "_data" / "bench_training.csv",
        [
            ("sgd", "float64", 1, 100, 0.6, 0.2),
            ("sgd", "float64", 32, 1000, 0.5, 0.25),
            ("sgd", "float64", "full", 1000, 0.4, 0.1),
            ("sgd", "float32", 1, 100, 9.0, 9.0),  # not on the float64 page
            ("adam", "float64", 1, 100, 0.9, 0.3),
        ],
    )
    figure.build(types.SimpleNamespace(srcdir=str(tmp_path)))

    output = tmp_path / "generated" / "performance"
    assert (output / "bench_training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(output / "bench_training_table.csv", encoding="utf-8") as file:
        header, *rows = list(csv.reader(file))
    assert header[:4] == ["solver", "batch", "scikit-learn µs", "skbatchnet µs"]
    # Microseconds per sample per epoch: seconds * 1e6 / (rows * 2 epochs).
    floor = 1e6 * FLOPS / RATE
    assert rows == [
        ["sgd", "1", "3000.00", "1000.00", "3.00", f"{floor:.2f}", "0.08"],
        ["sgd", "32", "250.00", "125.00", "2.00", f"{floor:.2f}", "0.62"],
        ["sgd", "full", "200.00", "50.00", "4.00", f"{floor:.2f}", "1.55"],
        ["adam", "1", "4500.00", "1500.00", "3.00", f"{floor:.2f}", "0.05"],
    ]


def test_a_run_without_float64_rows_says_how_to_record_one(scripts, tmp_path):
    bench, figure = scripts
    path = tmp_path / "_data" / "bench_training.csv"
    save(bench, path, [("sgd", "float32", 8, 100, 0.1, 0.1)])
    with pytest.raises(ValueError, match="--dtype float64 --save"):
        figure.read_rows(path)


def test_ratios_and_fractions_pair_the_fits_of_a_round(scripts):
    bench, _ = scripts
    # Every round's pair says skbatchnet is 2x faster, except the second,
    # whose skbatchnet fit ran in a fast spell of the machine. The medians of
    # the two columns come from different rounds and would say 4x.
    m = bench.Measurement(
        "sgd",
        "float64",
        32,
        1000,
        2,
        sklearn_times=(4.0, 4.0, 1.0),
        our_times=(2.0, 1.0, 0.5),
        rates=(RATE, 4 * RATE, 2 * RATE),
    )
    assert m.sklearn_time / m.our_time == 4.0
    assert m.ratio == 2.0  # the median of 2, 4 and 2
    floors = [FLOPS * 1000 * 2 / rate for rate in (RATE, 4 * RATE, 2 * RATE)]
    assert m.floors == pytest.approx(floors)
    assert m.floor == pytest.approx(floors[2])
    # Each round's floor over its own fit: floors[0] / 2, floors[0] / 4 and
    # floors[0]; the median is the first.
    assert m.fraction == pytest.approx(floors[0] / 2.0)
