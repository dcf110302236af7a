# cython: language_level=3, boundscheck=False, wraparound=False
# cython: cdivision=True, initializedcheck=False, nonecheck=False
"""The compiled epoch of :mod:`skbatchnet._epoch`, built for CPUs with AVX2.

The same source, compiled with ``-mavx2`` (setup.py) so that the loop's
element-wise passes and its own products run 256 bits wide instead of 128.
No FMA: each operation rounds as in the portable build, so both compute the
same bits. :mod:`skbatchnet._extension` imports this module only where
``_epoch.cpu_has_avx2()`` says the CPU runs it.
"""

include "_epoch.pyx"
