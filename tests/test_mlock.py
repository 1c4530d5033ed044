"""mlock(2) / mlock2(2) / munlock(2) against Linux 6.18 (mm/mlock.c) and
vmsim/conform/probes/anon-probe-6.18.jsonl."""
import errno


from vmsim import (PROT_NONE, PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_ANONYMOUS, MLOCK_ONFAULT,
                   MADV_DONTNEED)
from vmsim.mm import vmstat
from vmsim.mm.mm_types import VM_LOCKED, VM_LOCKONFAULT
from vmsim.mm.page_flags import PG_mlocked, PG_unevictable, PG_lru
from vmsim.mm.swap import lru_add_drain, LRU_UNEVICTABLE
from vmtest import pte_at, pfn_at  # noqa: F401
from vmtest import flt, errno_of  # noqa: F401

P = 4096
ANON = MAP_PRIVATE | MAP_ANONYMOUS
RW = PROT_READ | PROT_WRITE


def test_conform_mlock_populates(proc):
    """mlock of 16 fresh pages: 16 faults (GUP counts), Locked 64 kB; the write pass
    is free; munlock drops Locked."""
    k = proc.machine.k
    a = proc.mmap(0, 16 * P, RW, ANON)
    nr_mlock = k.vmstat[vmstat.NR_MLOCK]
    f = flt(proc)
    proc.mlock(a, 16 * P)
    assert flt(proc) - f == 16
    assert proc.mm.locked_vm == 16
    assert proc.mm.vma_lookup(a).vm_flags & VM_LOCKED
    assert k.vmstat[vmstat.NR_MLOCK] == nr_mlock + 16
    proc.touch(a, 16 * P, write=True)
    assert flt(proc) - f == 16
    lru_add_drain(k)
    for i in range(16):
        fl = k.mem.flags[pfn_at(proc, a + i * P)]
        assert fl & PG_mlocked and fl & PG_unevictable and fl & PG_lru
    assert k.lruvec.nr[LRU_UNEVICTABLE] >= 16
    proc.munlock(a, 16 * P)
    assert proc.mm.locked_vm == 0
    assert k.vmstat[vmstat.NR_MLOCK] == nr_mlock
    for i in range(16):
        fl = k.mem.flags[pfn_at(proc, a + i * P)]
        assert not fl & (PG_mlocked | PG_unevictable) and fl & PG_lru


def test_mlock_already_mapped_pages(proc):
    """mlock_pte_range -> mlock_folio: pages already mapped go to the unevictable LRU."""
    k = proc.machine.k
    a = proc.mmap(0, 8 * P, RW, ANON)
    proc.touch(a, 8 * P, write=True)
    lru_add_drain(k)
    culled = k.vmstat[vmstat.UNEVICTABLE_PGS_CULLED]
    f = flt(proc)
    proc.mlock(a, 8 * P)
    assert flt(proc) == f
    assert k.vmstat[vmstat.UNEVICTABLE_PGS_CULLED] == culled + 8
    assert all(k.mem.flags[pfn_at(proc, a + i * P)] & PG_unevictable for i in range(8))
    rescued = k.vmstat[vmstat.UNEVICTABLE_PGS_RESCUED]
    proc.munlock(a, 8 * P)
    assert k.vmstat[vmstat.UNEVICTABLE_PGS_RESCUED] == rescued + 8


def test_mlock_onfault(proc):
    """MLOCK_ONFAULT: no population (measured 0 faults); each later fault mlocks the
    new page (unevictable_pgs_mlocked +1 per page, measured)."""
    k = proc.machine.k
    a = proc.mmap(0, 8 * P, RW, ANON)
    f = flt(proc)
    mlocked = k.vmstat[vmstat.UNEVICTABLE_PGS_MLOCKED]
    proc.mlock(a, 8 * P, MLOCK_ONFAULT)
    assert flt(proc) == f
    assert proc.mm.vma_lookup(a).vm_flags & (VM_LOCKED | VM_LOCKONFAULT) == VM_LOCKED | VM_LOCKONFAULT
    proc.touch(a, 8 * P, write=True)
    assert flt(proc) - f == 8
    assert k.vmstat[vmstat.UNEVICTABLE_PGS_MLOCKED] == mlocked + 8


def test_errnos(proc):
    a = proc.mmap(0, 4 * P, RW, ANON)
    assert errno_of(proc.mlock, a, P, 2) == errno.EINVAL             # mlock2 flags
    n = proc.mmap(0, 4 * P, PROT_NONE, ANON)
    assert errno_of(proc.mlock, n, 4 * P) == errno.ENOMEM           # measured: GUP -EFAULT
    proc.munlock(n, 4 * P)
    e = proc.mmap(0, 4 * P, RW, ANON)
    proc.munmap(e + 2 * P, 2 * P)
    assert errno_of(proc.mlock, e, 4 * P) == errno.ENOMEM           # tail hole (measured)
    assert proc.mm.vma_lookup(e).vm_flags & VM_LOCKED               # before the hole: done
    assert errno_of(proc.munlock, e, 4 * P) == errno.ENOMEM
    assert errno_of(proc.mlock, e + 2 * P, 2 * P) == errno.ENOMEM
    proc.mlock(a, 0)
    proc.mlock(a + 100, 10)                  # start rounds down: page a is locked
    assert proc.mm.vma_lookup(a).vm_flags & VM_LOCKED
    assert proc.mm.vma_lookup(a + P).vm_flags & VM_LOCKED == 0


def test_munlock_across_merging_vmas(proc):
    """Measured on 6.18: munlock over locked/unlocked/locked pieces succeeds (the merge
    of the first piece with the next does not end the walk); the last piece stays
    apart (measured: the VMA at a ends at a+16P): its pages were faulted with another
    anon_vma, so it cannot merge."""
    a = proc.mmap(0, 20 * P, RW, ANON)
    proc.mlock(a, 4 * P)
    proc.mlock(a + 16 * P, 4 * P)
    assert len(proc.mm._vmas_in(a, a + 20 * P)) == 3
    proc.munlock(a, 20 * P)
    assert [(v.vm_start, v.vm_end) for v in proc.mm._vmas_in(a, a + 20 * P)] == \
        [(a, a + 16 * P), (a + 16 * P, a + 20 * P)]
    assert proc.mm.locked_vm == 0


def test_dontneed_on_mlocked_is_einval(proc):
    a = proc.mmap(0, 4 * P, RW, ANON)
    proc.mlock(a, 4 * P)
    assert errno_of(proc.madvise, a, 4 * P, MADV_DONTNEED) == errno.EINVAL


def test_mprotect_writable_locked_populates(proc):
    """mprotect_fixup(): a private VM_LOCKED VMA becoming writable is populated to
    break COW at once (the read-only populate mapped the zero page)."""
    a = proc.mmap(0, 4 * P, PROT_READ, ANON)
    proc.mlock(a, 4 * P)
    assert pfn_at(proc, a) == proc.machine.k.zero_pfn
    f = flt(proc)
    proc.mprotect(a, 4 * P, RW)
    assert flt(proc) - f == 4
    assert pfn_at(proc, a) != proc.machine.k.zero_pfn
