# cython: language_level=3
"""The typed state of the compiled tier, built once per fit (see _plan.pyx)."""

from libc.stdint cimport uint64_t
from numpy.random cimport bitgen_t

cimport skbatchnet._noise as N

from ._choice cimport Choice

from ._products cimport Sparse
from ._updates cimport Shape, Solver


cdef struct Config:
    Shape shape
    int activation
    int loss
    int reduction
    Py_ssize_t chunk_rows
    double alpha
    double total_weight
    double weight_per_row  # S / n: a batch's expected weight per row
    double max_norm  # per-example clipping to this norm; 0: none
    double expected_rows  # Poisson batches: q n, their expected size; 0: none
    double noise_std  # DP noise's std on the reduced gradient; 0: none
    long check_steps
    double check_work  # units of work (_codes.CHECK_WORK)
    Py_ssize_t tiny_product
    Py_ssize_t split_rows
    Py_ssize_t gemv_limit
    Py_ssize_t gemm_limit
    Py_ssize_t block_rows  # rows per row block of a chunk (_tiles.pxd); 0: one
    Py_ssize_t split_work  # a product this large gets two tiles at least
    Py_ssize_t update_piece  # parameters per piece of the update
    double thread_work  # a step of fewer multiply-adds runs on one thread
    bint choose_threads  # the team only where faster (_choice.pxd); else always
    bint track_noise  # the gradient noise scale's terms at every step of B >= 2


cdef struct Counters:
    # What an epoch did, as it runs; EpochResult in Python.
    int status
    long batch
    double loss_sum
    double weight_sum
    long seen
    long steps
    long clipped
    long adam_t
    long n_averaged
    long samples_seen
    double noise_g2  # sums over the tracked steps of the |G|^2 estimate,
    double noise_trace  # of the tr(Sigma) estimate,
    long noise_steps  # and their count



cdef class EpochPlan:
    cdef Config cfg
    cdef Choice choice  # one thread or the team, from the fit's steps so far
    cdef Sparse csr
    cdef readonly bint sparse
    cdef readonly object dtype
    cdef readonly Py_ssize_t n_samples, chunk_rows, max_rows
    cdef readonly object bounds
    cdef readonly Py_ssize_t reach  # the largest stop of bounds
    cdef readonly object stored_order  # arange(n_samples): rows as stored
    cdef object _keep  # the arrays the pointers below point into
    cdef char* x
    cdef char* y
    cdef char* sw
    cdef char* work
    cdef char* c_rows


cdef class OptimizerState:
    cdef Solver solver
    cdef public long t
    cdef readonly object params, dtype
    cdef object _keep
    cdef char* p
    cdef char* s1
    cdef char* s2


cdef class AverageState:
    cdef public long n_averaged, samples_seen
    cdef readonly long start
    cdef readonly object mean
    cdef char* m


cdef class NoiseSource:
    cdef object bit_generator
    cdef bitgen_t* rng
    cdef N.Ziggurat table
    cdef uint64_t* block  # scratch for a step's raw draws
    cdef readonly Py_ssize_t size
    cdef object _keep
