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
from importlib.metadata import version as _version, PackageNotFoundError as _NotInstalled

try:
    __version__ = _version("vmsim")          # single source: pyproject.toml's [project] version
except _NotInstalled:                        # a source tree on sys.path, never installed
    __version__ = "0+unknown"

from vmsim.api import Machine, Process, SignalDelivered, rusage
from vmsim.mm.mmap import (PROT_NONE, PROT_READ, PROT_WRITE, PROT_EXEC, PROT_GROWSDOWN,
                           PROT_GROWSUP, MAP_SHARED, MAP_PRIVATE, MAP_SHARED_VALIDATE,
                           MAP_ANONYMOUS, MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_POPULATE,
                           MAP_NORESERVE, MAP_GROWSDOWN, MAP_HUGETLB, MAP_HUGE_2MB, MAP_HUGE_1GB,
                           MAP_LOCKED, MAP_STACK, MAP_NONBLOCK, MAP_DROPPABLE)
from vmsim.arch.x86.mmu_batch import ACCESS_READ, ACCESS_WRITE, ACCESS_EXEC
from vmsim.uapi import *  # noqa: F401,F403  (MADV_*, MREMAP_*, O_*, signals)

__all__ = ["Machine", "Process", "SignalDelivered", "rusage"] + [
    n for n in dir() if n.isupper() and not n.startswith("_")]
