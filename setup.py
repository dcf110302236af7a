"""The compiled training loop; everything else is in pyproject.toml.

One Cython source, two extension modules: ``skbatchnet._loop``, compiled for
the baseline instruction set of the platform, and on x86-64 also
``skbatchnet._loop_avx2``, the same code compiled with ``-mavx2``.
``skbatchnet._compiled`` picks the second at run time on CPUs that have AVX2,
so a build runs on any CPU of its platform: no ``-march=native``.

Flags that keep results as written: ``-ffast-math`` would reorder sums and
drop NaN checks; ``-fno-math-errno`` and ``-fno-trapping-math`` only let the
compiler vectorize loops that call sqrt or compare, with the same values. No
``-mfma``: a fused multiply-add rounds once where the portable build rounds
twice, and the two builds compute the same bits.
"""

import os
import platform

from setuptools import Extension, setup

FLAGS = ["-O3", "-fno-math-errno", "-fno-trapping-math"]


def builds_avx2_twin():
    """Whether the compiler targets x86-64 (not a macOS build for arm64)."""
    x86_64 = platform.machine().lower() in ("x86_64", "amd64")
    return x86_64 and "arm64" not in os.environ.get("ARCHFLAGS", "")


extensions = [
    Extension("skbatchnet._loop", ["skbatchnet/_loop.pyx"], extra_compile_args=FLAGS)
]
if builds_avx2_twin():
    extensions.append(
        Extension(
            "skbatchnet._loop_avx2",
            ["skbatchnet/_loop_avx2.pyx"],
            extra_compile_args=[*FLAGS, "-mavx2"],
        )
    )

setup(ext_modules=extensions)
