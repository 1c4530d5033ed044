"""vmsim: an executable, Linux-faithful model of x86-64 memory management.

The API mirrors what a Linux process and an administrator can do::

    import vmsim
    from vmsim import PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_ANONYMOUS
    m = vmsim.Machine(memory="4G", cpus=2)
    p = m.spawn()
    a = p.mmap(0, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
    p.touch(a, 1 << 20, write=True)
    print(m.read_file(f"/proc/{p.pid}/smaps_rollup"))
"""


def __getattr__(name):
    """__version__ is looked up on first use: importlib.metadata costs ~0.1 s to import."""
    if name == "__version__":
        from importlib.metadata import version, PackageNotFoundError
        try:
            v = version("vmsim")             # single source: pyproject.toml's [project] version
        except PackageNotFoundError:         # a source tree on sys.path, never installed
            v = "0+unknown"
        globals()["__version__"] = v
        return v
    raise AttributeError(f"module 'vmsim' has no attribute {name!r}")


def _import_numpy_with_quiet_blas_threads():
    """Import numpy with its OpenBLAS threads set to sleep as soon as they are idle.

    Importing numpy starts OpenBLAS's thread pool (one thread per further CPU), and
    each thread spins for about 2**28 cycles before it sleeps (its default
    THREAD_TIMEOUT): ~33 ms of CPU per thread at every ``import vmsim``, measured on
    this 2-CPU machine, where the whole import takes ~0.2 s of CPU. vmsim never calls
    BLAS (no matrix products). OPENBLAS_THREAD_TIMEOUT=4 (OpenBLAS's minimum, 2**4
    cycles) keeps the pool, so a user's BLAS calls still run on every CPU; only the
    wait for the next job is a sleep instead of a spin. It is set only while numpy
    loads (OpenBLAS reads it then), only when numpy is not loaded yet and the user
    has not set it, and removed again, so child processes never see it."""
    import os
    import sys
    if "numpy" in sys.modules or "OPENBLAS_THREAD_TIMEOUT" in os.environ:
        return
    os.environ["OPENBLAS_THREAD_TIMEOUT"] = "4"
    try:
        import numpy  # noqa: F401
    finally:
        del os.environ["OPENBLAS_THREAD_TIMEOUT"]


_import_numpy_with_quiet_blas_threads()

from vmsim.api import Machine, Process, SignalDelivered, rusage  # noqa: E402
from vmsim.mm.mmap import (PROT_NONE, PROT_READ, PROT_WRITE, PROT_EXEC, PROT_GROWSDOWN,
                           PROT_GROWSUP, MAP_SHARED, MAP_PRIVATE, MAP_SHARED_VALIDATE,
                           MAP_ANONYMOUS, MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_POPULATE,
                           MAP_NORESERVE, MAP_GROWSDOWN, MAP_HUGETLB, MAP_HUGE_2MB, MAP_HUGE_1GB,
                           MAP_LOCKED, MAP_STACK, MAP_NONBLOCK, MAP_DROPPABLE)
from vmsim.arch.x86.mmu_batch import ACCESS_READ, ACCESS_WRITE, ACCESS_EXEC
from vmsim.uapi import *  # noqa: F401,F403  (MADV_*, MREMAP_*, O_*, signals)

__all__ = ["Machine", "Process", "SignalDelivered", "rusage"] + [
    n for n in dir() if n.isupper() and not n.startswith("_")]
