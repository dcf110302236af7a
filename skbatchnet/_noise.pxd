# cython: language_level=3, boundscheck=False, wraparound=False
"""DP-SGD's Gaussian noise, drawn in the loop from a numpy Generator's state.

The sampler is ``_gaussian.py``'s ziggurat, restated: a block of raw 64-bit
draws, one per parameter, then each output from its draw (the fast path, no
unpredictable branch) or, in index order, from new draws after the block (the
slow path). Given the same generator state the numpy tier computes the same
bits and leaves the generator in the same state. The caller holds the
BitGenerator's lock while it draws.
"""

from cython cimport floating
from libc.math cimport exp, log
from libc.stdint cimport uint64_t
from numpy.random cimport bitgen_t


cdef struct Ziggurat:
    const double* w  # layer i's width / 2^52
    const uint64_t* k  # the fast path's bound on the 52-bit integer
    const double* y  # f at the layers' edges
    double r  # where the tail starts


cdef inline double _uniform(bitgen_t* rng) noexcept nogil:
    """A 53-bit uniform double in [0, 1) from the top bits of a draw."""
    return (rng.next_uint64(rng.state) >> 11) * (1.0 / 9007199254740992.0)


cdef inline double _sign(uint64_t raw) noexcept nogil:
    """Bit 8 of a draw as +1 or -1, without a branch to mispredict."""
    return 1.0 - 2.0 * <double>((raw >> 8) & 1)


cdef inline double _slow(const Ziggurat* t, uint64_t raw, bitgen_t* rng) noexcept nogil:
    """An output whose draw missed the fast path (``_gaussian._slow``)."""
    cdef Py_ssize_t i
    cdef uint64_t m
    cdef double x, sign, a, b, lower, upper, height
    while True:
        i = raw & 0xFF
        sign = _sign(raw)
        m = raw >> 12
        x = <double>m * t.w[i]
        if m < t.k[i]:
            return x * sign
        if i == 0:
            if x < t.r:
                return x * sign
            while True:  # Marsaglia's tail: exponential proposals beyond r
                a = -log(1.0 - _uniform(rng)) / t.r
                b = -log(1.0 - _uniform(rng))
                if b + b > a * a:
                    return (t.r + a) * sign
        lower, upper = t.y[i], t.y[i + 1]
        height = lower + _uniform(rng) * (upper - lower)
        if height < exp(-0.5 * x * x):
            return x * sign
        raw = rng.next_uint64(rng.state)


cdef inline void add_noise(
    bitgen_t* rng, const Ziggurat* t, uint64_t* block, floating* grad,
    Py_ssize_t size, double scale
) noexcept nogil:
    """grad[j] += scale * z_j, z_j standard normal (``_gaussian.standard_normal``),
    the product rounded to the network's type as the numpy tier rounds it;
    ``block`` holds ``size`` draws of scratch."""
    cdef Py_ssize_t j, i
    cdef uint64_t raw, m
    cdef double z
    for j in range(size):
        block[j] = rng.next_uint64(rng.state)
    for j in range(size):
        raw = block[j]
        i = raw & 0xFF
        m = raw >> 12
        if m < t.k[i]:
            z = <double>m * t.w[i] * _sign(raw)
        else:
            z = _slow(t, raw, rng)
        grad[j] = grad[j] + <floating>(scale * z)
