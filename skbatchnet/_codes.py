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
    "BLOCK_ROWS",
    "CHECK_STEPS",
    "CHECK_WORK",
    "ONE_THREAD_GEMM",
    "ONE_THREAD_GEMV",
    "SMALL_BATCH_ROWS",
    "SPLIT_WORK",
    "THREAD_WORK",
    "TINY_PRODUCT",
    "UPDATE_PIECE",
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

# Row blocks and tiles (_tiles.pxd): the compiled loop's unit of work for
# its threads. Where scipy's BLAS is OpenBLAS, every batch is cut (the
# loop's split_rows has no bound) into row blocks of at most BLOCK_ROWS rows
# and column tiles below ONE_THREAD_GEMM, which the loop's threads share;
# a product of SPLIT_WORK multiply-adds or more gets two tiles at least, so
# that a small batch shares too. The update runs in pieces of UPDATE_PIECE
# parameters. None depends on the thread count, so neither do the results.
BLOCK_ROWS = 64
SPLIT_WORK = 65536
UPDATE_PIECE = 16384
# Threads share a step of at least THREAD_WORK multiply-adds (its products,
# as the Ctrl-C watch counts them); a smaller one is one row block, cut only
# as OpenBLAS's size rule asks, on the calling thread. Below it the two
# cores pass each other more cache lines than they save work: the team
# first pays at about 90 rows of the benchmark's network, some 7 million
# multiply-adds (the Performance page, "Threads in the loop").
THREAD_WORK = 6_000_000

# Products of at most this many multiply-adds skip BLAS, whose call costs
# more than they compute. The bound is low: BLAS picks kernels for the CPU it
# runs on (AVX2, FMA), which the portable build cannot, so from a few hundred
# multiply-adds on (a ten-class output layer at one row) BLAS is as quick.
TINY_PRODUCT = 512

# When the compiled loop looks for a pending Ctrl-C, taking the GIL that
# Python's signal handlers need: after CHECK_STEPS steps or CHECK_WORK units
# of work, whichever comes first. A unit is one multiply-add of a product or
# one parameter updated, counted after each product and each update, so a
# batch of any size, in chunks or through wide layers, looks between its
# products. The slowest units, those of memory-bound batches of one row
# through wide layers, take about a nanosecond, which puts a look every few
# tens of milliseconds at worst (the Performance page, "Interrupting a
# fit"). Counting work rather than reading a clock keeps the test to an
# addition and a comparison, and the looks the same from run to run. Steps
# too short for their work to count are bounded by CHECK_STEPS: taking the
# GIL costs about one such step, so one look in a few thousand is lost in
# the noise.
CHECK_STEPS = 2048
CHECK_WORK = 2**24
