"""The compiled tier; everything else is in pyproject.toml.

Three extension modules compiled for the baseline instruction set of the
platform: ``skbatchnet._products`` (the numpy path's one-thread products),
``skbatchnet._plan`` (the typed state of a fit) and ``skbatchnet._epoch`` (the
epoch loop). On x86-64 also ``skbatchnet._epoch_avx2``, the epoch's source
compiled with ``-mavx2``; ``skbatchnet._extension`` picks it at run time on
CPUs that have AVX2, so a build runs on any CPU of its platform: no
``-march=native``. The package runs without any of them, on its numpy path.

Flags that keep results as written: ``-ffast-math`` would reorder sums and
drop NaN checks; ``-fno-math-errno`` and ``-fno-trapping-math`` only let the
compiler vectorize loops that call sqrt or compare, with the same values. No
``-mfma``: a fused multiply-add rounds once where the portable build rounds
twice, and the two builds compute the same bits.
"""

import os
import platform

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

# -ffp-contract=off: no fused multiply-adds, which round once where the numpy
# tier rounds twice (aarch64 compilers fuse by default); the DP noise and
# its sampler's decisions must be the numpy tier's bits.
FLAGS = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off"]


def builds_avx2_twin():
    """Whether the compiler targets x86-64 (not a macOS build for arm64)."""
    x86_64 = platform.machine().lower() in ("x86_64", "amd64")
    return x86_64 and "arm64" not in os.environ.get("ARCHFLAGS", "")


# numpy's random C API (DP noise drawn in the loop, _noise.pxd): its headers
# and its static library, which numpy ships for extensions to link.
NUMPY_RANDOM = dict(
    include_dirs=[numpy.get_include()],
    library_dirs=[os.path.join(os.path.dirname(numpy.__file__), "random", "lib")],
    libraries=["npyrandom"],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
)

extensions = [
    Extension(
        f"skbatchnet.{name}",
        [f"skbatchnet/{name}.pyx"],
        extra_compile_args=FLAGS,
        **(NUMPY_RANDOM if name in ("_plan", "_epoch") else {}),
    )
    for name in ("_products", "_plan", "_epoch")
]
if builds_avx2_twin():
    extensions.append(
        Extension(
            "skbatchnet._epoch_avx2",
            ["skbatchnet/_epoch_avx2.pyx"],
            extra_compile_args=[*FLAGS, "-mavx2"],
            **NUMPY_RANDOM,
        )
    )

# cythonize, not setuptools' own .pyx handling: it also rebuilds a module
# when a .pxd it cimports (the kernels, the products) has changed.
setup(ext_modules=cythonize(extensions))
