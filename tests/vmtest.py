"""Helpers shared by the tests: page tables read the way the hardware does, faults, errno."""
import pytest
from vmsim.arch.x86 import pgtable_types as T


def pte_at(proc, addr, level=12):
    """Return the entry mapping ``addr`` at the level whose shift is ``level`` (12: the
    PTE), or the first empty entry met on the way down (0)."""
    mm = proc.mm
    k = mm.kernel
    pool = k.ptpool.mv
    shift = k.pgdir_shift
    p = mm.pgd_ptr + ((addr >> shift) & 511)
    while True:
        e = pool[p]
        if shift == level or not e:
            return e
        shift -= 9
        p = k.mem.private[(e & T.PTE_PFN_MASK) >> 12] * 512 + ((addr >> shift) & 511)


def pfn_at(proc, addr):
    """Return the PFN the PTE of ``addr`` maps, or -1 when it is not present."""
    pte = pte_at(proc, addr)
    return (pte & T.PTE_PFN_MASK) >> 12 if pte & T._PAGE_PRESENT else -1


def flt(proc):
    """Return the process's minor fault count (getrusage ru_minflt)."""
    return proc.getrusage().ru_minflt


def errno_of(fn, *a):
    """Call fn(*a), which must fail; return its errno."""
    with pytest.raises(OSError) as e:
        fn(*a)
    return e.value.errno


def vmas(proc, start, end):
    """Return the (start, end) of each VMA meeting [start, end)."""
    return [(v.vm_start, v.vm_end) for v in proc.mm._vmas_in(start, end)]


def file_mincore(proc, fd, pages):
    """Return mincore(2) over a shared read-only mapping of the file's first ``pages``
    pages, one character a page: R resident, . not."""
    from vmsim import PROT_READ, MAP_SHARED
    a = proc.mmap(0, pages * 4096, PROT_READ, MAP_SHARED, fd, 0)
    r = "".join("R" if b & 1 else "." for b in proc.mincore(a, pages * 4096))
    proc.munmap(a, pages * 4096)
    return r
