"""What the numpy tier and the compiled tier agree on, written once.

The compiled loop selects its kernels by integer codes; each registry entry
(an :class:`~skbatchnet._activations.Activation`, an
:class:`~skbatchnet._losses.OutputLoss`, a reduction, a solver) carries its
code from the enumerations below, and ``_kernels.pxd`` declares the same
members with the same values (``tests/test_registries.py`` holds them
equal). The thresholds that decide how products are computed live here too:
the numpy path reads them for its small batches, and the compiled loop reads
them when its epoch plan is built, so both tiers make the same choices.

This module imports nothing compiled: the numpy tier must run without the
build.
"""

from enum import IntEnum

__all__ = [
    "CHECK_ROWS",
    "CHECK_STEPS",
    "ONE_THREAD_GEMM",
    "ONE_THREAD_GEMV",
    "SMALL_BATCH_ROWS",
    "TINY_PRODUCT",
    "ActivationCode",
    "LossCode",
    "ReductionCode",
    "SolverCode",
    "Status",
]


class ActivationCode(IntEnum):
    """Hidden activations with a compiled kernel."""

    IDENTITY = 0
    LOGISTIC = 1
    TANH = 2
    RELU = 3


class LossCode(IntEnum):
    """Output losses with a compiled kernel."""

    SQUARED_ERROR = 0
    POISSON = 1
    BINARY_LOG_LOSS = 2
    LOG_LOSS = 3


class ReductionCode(IntEnum):
    """Reductions with a compiled kernel."""

    MEAN = 0
    SUM = 1
    UNBIASED = 2


class SolverCode(IntEnum):
    """Stochastic solvers with a compiled update."""

    SGD = 0
    ADAM = 1


class Status(IntEnum):
    """How an epoch of the compiled loop ended."""

    OK = 0
    NONFINITE_LOSS = 1  # at the batch reported; that batch took no step
    NONFINITE_WEIGHTS = 2  # found after the epoch's last step
    INTERRUPTED = 3  # KeyboardInterrupt; the parameters are mid-epoch


# Small batches keep BLAS on one thread without a process-wide limit: their
# products go to BLAS in calls that OpenBLAS runs single-threaded by their
# size. OpenBLAS starts threads for a gemv of 2304 * 4 multiply-adds or more
# and for a gemm of more than 65536 * 4; threads that wake for products this
# small cost more than they save, and on a busy machine far more. From
# SMALL_BATCH_ROWS rows on, products are left whole to BLAS and its threads.
SMALL_BATCH_ROWS = 64
ONE_THREAD_GEMV = 2304 * 4 - 1
ONE_THREAD_GEMM = 65536 * 4

# Products of at most this many multiply-adds skip BLAS, whose call costs
# more than they compute. The bound is low: BLAS picks kernels for the CPU it
# runs on (AVX2, FMA), which the portable build cannot, so from a few hundred
# multiply-adds on (a ten-class output layer at one row) BLAS is as quick.
TINY_PRODUCT = 512

# Steps, and rows, between two looks of the compiled loop for a pending
# Ctrl-C. Taking the GIL costs about as much as one step at batch size 1, so
# a look every few thousand steps is lost in the noise; the row bound makes
# large batches, whose steps are long, look every few steps, so that Ctrl-C
# is seen within about a second at any batch size.
CHECK_STEPS = 2048
CHECK_ROWS = 8192
