# cython: language_level=3, boundscheck=False, wraparound=False
"""DP-SGD's Gaussian noise, drawn in the loop from a numpy Generator's state.

numpy's random C API (``bitgen_t`` and ``random_standard_normal``) draws
the same numbers, in the same order, as ``Generator.standard_normal``, so
the compiled loop and the numpy tier add identical noise given the same
generator state. The caller holds the BitGenerator's lock while it draws.
"""

from cython cimport floating
from numpy.random cimport bitgen_t


cdef extern from "numpy/random/distributions.h":
    double random_standard_normal(bitgen_t* bitgen_state) nogil


cdef inline void add_noise(
    bitgen_t* rng, floating* grad, Py_ssize_t size, double scale
) noexcept nogil:
    """grad[j] += scale * z_j, z_j standard normal, in draw order; the
    product rounded to the network's type as the numpy tier rounds it."""
    cdef Py_ssize_t j
    for j in range(size):
        grad[j] = grad[j] + <floating>(scale * random_standard_normal(rng))
