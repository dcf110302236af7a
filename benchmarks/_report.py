"""What both benchmark scripts print: the environment and Markdown tables."""

import os
import platform
import time
import warnings

import numpy as np
import sklearn
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_info, threadpool_limits

import skbatchnet


def environment_lines():
    """Versions, BLAS libraries and their thread counts, CPUs."""
    blas = [
        f"{pool['internal_api']} {pool.get('version')} ({pool['num_threads']} threads)"
        for pool in threadpool_info()
        if pool["user_api"] == "blas"
    ]
    return [
        f"python {platform.python_version()}, numpy {np.__version__}, "
        f"scikit-learn {sklearn.__version__}, skbatchnet {skbatchnet.__version__}",
        f"BLAS: {', '.join(blas) or 'none found'}",
        f"CPUs: {os.cpu_count()}",
    ]


def markdown_table(headers, rows):
    """Rows of strings as a Markdown table with aligned columns."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]

    def line(cells):
        padded = (str(cell).ljust(width) for cell, width in zip(cells, widths))
        return "| " + " | ".join(padded) + " |"

    separator = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
    return "\n".join([line(headers), separator, *(line(row) for row in rows)])


def run_timed(run, args):
    """``run(args)`` under the ``--blas-threads`` limit, then its wall time.

    The fits run a fixed number of epochs on purpose, so scikit-learn's
    ConvergenceWarning says nothing and is silenced.
    """
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    start = time.perf_counter()
    with threadpool_limits(limits=args.blas_threads, user_api="blas"):
        run(args)
    print(f"total wall time: {time.perf_counter() - start:.1f} s")
