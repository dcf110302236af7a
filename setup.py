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
import shutil
import subprocess
import sys
import sysconfig
import tempfile

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



def openmp_flags():
    """The compile and link flags of OpenMP, where the compiler has it.

    The epoch's threads (_pass.pxd) are OpenMP's, as in scikit-learn's
    compiled estimators. A compiler without it (Apple's clang without
    libomp, for one), or SKBATCHNET_NO_OPENMP=1, builds a loop that runs on
    the calling thread alone and computes the same bits.
    """
    if os.environ.get("SKBATCHNET_NO_OPENMP", "") not in ("", "0"):
        return []
    flag = "/openmp" if sys.platform == "win32" else "-fopenmp"
    if sys.platform == "win32":
        return [flag]  # MSVC has it; its runtime is vcomp
    compiler = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()
    program = "#include <omp.h>\nint main(void) { return omp_get_max_threads() < 1; }\n"
    folder = tempfile.mkdtemp()
    try:
        source = os.path.join(folder, "omp.c")
        with open(source, "w") as f:
            f.write(program)
        built = subprocess.run(
            [*compiler, flag, source, "-o", os.path.join(folder, "omp")],
            capture_output=True,
        )
    except OSError:
        return []
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if built.returncode != 0:
        print("skbatchnet: the C compiler has no OpenMP; the loop runs on one thread.")
        return []
    return [flag]


OPENMP = openmp_flags()

extensions = [
    Extension(
        f"skbatchnet.{name}",
        [f"skbatchnet/{name}.pyx"],
        extra_compile_args=FLAGS + (OPENMP if name == "_epoch" else []),
        extra_link_args=OPENMP if name == "_epoch" else [],
        **(NUMPY_RANDOM if name in ("_plan", "_epoch") else {}),
    )
    for name in ("_products", "_plan", "_epoch")
]
if builds_avx2_twin():
    extensions.append(
        Extension(
            "skbatchnet._epoch_avx2",
            ["skbatchnet/_epoch_avx2.pyx"],
            extra_compile_args=[*FLAGS, "-mavx2", *OPENMP],
            extra_link_args=OPENMP,
            **NUMPY_RANDOM,
        )
    )

# cythonize, not setuptools' own .pyx handling: it also rebuilds a module
# when a .pxd it cimports (the kernels, the products) has changed.
setup(ext_modules=cythonize(extensions))
