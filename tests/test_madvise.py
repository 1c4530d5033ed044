"""madvise(2) against Linux 6.18 (mm/madvise.c), vmsim/conform/probes/anon-probe-6.18.jsonl and
tools/testing/selftests/mm/madv_populate.c."""
import errno

import pytest

from vmsim import (PROT_NONE, PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_SHARED, MAP_ANONYMOUS,
                   MADV_DONTNEED, MADV_FREE, MADV_POPULATE_READ, MADV_POPULATE_WRITE,
                   MADV_HUGEPAGE, MADV_NOHUGEPAGE, MADV_RANDOM, MADV_SEQUENTIAL, MADV_NORMAL,
                   MADV_DONTFORK, MADV_DOFORK, MADV_WIPEONFORK, MADV_KEEPONFORK, MADV_DONTDUMP,
                   MADV_DODUMP, MADV_REMOVE, MADV_COLLAPSE, MADV_COLD, MADV_PAGEOUT,
                   MADV_DONTNEED_LOCKED, MADV_HWPOISON, MADV_WILLNEED)
from vmsim.arch.x86 import pgtable_types as T
from vmsim.mm.mm_types import (VM_HUGEPAGE, VM_NOHUGEPAGE, VM_RAND_READ, VM_SEQ_READ, VM_DONTCOPY,
                               VM_WIPEONFORK, VM_DONTDUMP, MM_ANONPAGES)
from vmsim.mm.page_flags import PG_anon, PG_swapbacked, PG_lru
from vmtest import pte_at, pfn_at  # noqa: F401
from vmtest import flt, errno_of  # noqa: F401

P = 4096
ANON = MAP_PRIVATE | MAP_ANONYMOUS
RW = PROT_READ | PROT_WRITE


def lazyfree_kb(proc, addr, n):
    """smaps LazyFree: anon folios that went through the lazyfree move (!swapbacked)."""
    k = proc.machine.k
    total = 0
    for i in range(n):
        pfn = pfn_at(proc, addr + i * P)
        f = k.mem.flags[pfn] if pfn >= 0 else 0
        if f & PG_anon and not f & PG_swapbacked and not pte_at(proc, addr + i * P) & T._PAGE_DIRTY:
            total += 4
    return total


def test_conform_dontneed_retouch(proc):
    a = proc.mmap(0, 16 * P, RW, ANON)
    rss0 = proc.mm.rss_stat[MM_ANONPAGES]
    proc.touch(a, 16 * P, write=True, value=9)
    assert proc.mm.rss_stat[MM_ANONPAGES] == rss0 + 16
    f = flt(proc)
    proc.madvise(a, 16 * P, MADV_DONTNEED)
    assert flt(proc) == f and proc.mm.rss_stat[MM_ANONPAGES] == rss0
    assert all(pte_at(proc, a + i * P) == 0 for i in range(16))
    proc.touch(a, 16 * P, write=True)
    assert flt(proc) - f == 16
    proc.madvise(a, 16 * P, MADV_DONTNEED)
    f = flt(proc)
    assert proc.read(a, 16 * P) == bytes(16 * P)
    assert flt(proc) - f == 16
    assert proc.machine.k.tlb_pending == []


def test_conform_madv_free_16_pages(proc):
    """madv_free: Private_Clean at once, LazyFree 0 until a drain (the lru_lazyfree batch
    holds 31); mlock/munlock of another page drains it -> 64 kB; a write dirties 4 kB."""
    a = proc.mmap(0, 16 * P, RW, ANON)
    other = proc.mmap(0, P, RW, ANON)
    proc.touch(other, P, write=True)
    proc.touch(a, 16 * P, write=True, value=5)
    f = flt(proc)
    proc.madvise(a, 16 * P, MADV_FREE)
    assert flt(proc) == f
    assert all(not pte_at(proc, a + i * P) & (T._PAGE_DIRTY | T._PAGE_ACCESSED) for i in range(16))
    assert lazyfree_kb(proc, a, 16) == 0
    proc.mlock(other, P)                           # mlock_vma_pages_range: lru_add_drain()
    proc.munlock(other, P)
    assert lazyfree_kb(proc, a, 16) == 64
    assert proc.read(a + 3 * P, 1) == b"\x05" and flt(proc) == f
    proc.write(a, b"\x06")
    assert flt(proc) == f
    assert lazyfree_kb(proc, a, 16) == 60


def test_conform_madv_free_64_pages(proc):
    """64 pages: two full batches of 31 moved at once -> LazyFree 248 kB (measured)."""
    a = proc.mmap(0, 64 * P, RW, ANON)
    proc.touch(a, 64 * P, write=True)
    proc.madvise(a, 64 * P, MADV_FREE)
    assert lazyfree_kb(proc, a, 64) == 248
    assert proc.machine.k.tlb_pending == []


def test_free_dontneed_validity(proc):
    rss0 = proc.mm.rss_stat[MM_ANONPAGES]
    a = proc.mmap(0, 4 * P, RW, ANON | 0x2000)            # MAP_LOCKED
    assert proc.mm.rss_stat[MM_ANONPAGES] == rss0 + 4
    assert errno_of(proc.madvise, a, 4 * P, MADV_DONTNEED) == errno.EINVAL
    assert errno_of(proc.madvise, a, 4 * P, MADV_FREE) == errno.EINVAL
    assert errno_of(proc.madvise, a, 4 * P, MADV_COLD) == errno.EINVAL
    assert errno_of(proc.madvise, a, 4 * P, MADV_PAGEOUT) == errno.EINVAL
    assert errno_of(proc.madvise, a, 4 * P, MADV_REMOVE) == errno.EINVAL
    proc.madvise(a, 4 * P, MADV_DONTNEED_LOCKED)
    assert proc.mm.rss_stat[MM_ANONPAGES] == rss0
    s = proc.mmap(0, 4 * P, RW, MAP_SHARED | MAP_ANONYMOUS)
    assert errno_of(proc.madvise, s, 4 * P, MADV_FREE) == errno.EINVAL
    assert errno_of(proc.madvise, s, 4 * P, MADV_WIPEONFORK) == errno.EINVAL


def test_basic_errnos(proc):
    a = proc.mmap(0, 4 * P, RW, ANON)
    assert errno_of(proc.madvise, a + 1, P, MADV_DONTNEED) == errno.EINVAL
    assert errno_of(proc.madvise, a, P, 12345) == errno.EINVAL
    assert errno_of(proc.madvise, a, P, MADV_HWPOISON) == errno.EINVAL   # no MEMORY_FAILURE
    assert errno_of(proc.madvise, a, (1 << 64) - 100, MADV_DONTNEED) == errno.EINVAL
    proc.madvise(0x10000, 0, MADV_DONTNEED)                              # len 0
    assert errno_of(proc.madvise, 0x10000, P, MADV_DONTNEED) == errno.ENOMEM


def test_hole_advises_mapped_parts_then_enomem(proc):
    a = proc.mmap(0, 4 * P, RW, ANON)
    proc.touch(a, 4 * P, write=True)
    proc.munmap(a + P, P)
    assert errno_of(proc.madvise, a, 4 * P, MADV_DONTNEED) == errno.ENOMEM
    assert pte_at(proc, a) == 0 and pte_at(proc, a + 3 * P) == 0
    assert errno_of(proc.madvise, a, 4 * P, MADV_RANDOM) == errno.ENOMEM
    assert proc.mm.vma_lookup(a + 3 * P).vm_flags & VM_RAND_READ


@pytest.mark.parametrize("adv,setf,clear_adv", [
    (MADV_HUGEPAGE, VM_HUGEPAGE, MADV_NOHUGEPAGE), (MADV_RANDOM, VM_RAND_READ, MADV_NORMAL),
    (MADV_SEQUENTIAL, VM_SEQ_READ, MADV_NORMAL), (MADV_DONTFORK, VM_DONTCOPY, MADV_DOFORK),
    (MADV_WIPEONFORK, VM_WIPEONFORK, MADV_KEEPONFORK), (MADV_DONTDUMP, VM_DONTDUMP, MADV_DODUMP)])
def test_flag_advice_splits_and_merges(proc, adv, setf, clear_adv):
    a = proc.mmap(0, 8 * P, RW, ANON)
    proc.madvise(a + 2 * P, 2 * P, adv)
    layout = [(v.vm_start, v.vm_end) for v in proc.mm._vmas_in(a, a + 8 * P)]
    assert layout == [(a, a + 2 * P), (a + 2 * P, a + 4 * P), (a + 4 * P, a + 8 * P)]
    assert proc.mm.vma_lookup(a + 2 * P).vm_flags & setf
    proc.madvise(a + 2 * P, 2 * P, clear_adv)
    if adv == MADV_HUGEPAGE:
        # hugepage_madvise(): NOHUGEPAGE sets VM_NOHUGEPAGE, so the piece stays apart.
        assert proc.mm.vma_lookup(a + 2 * P).vm_flags & (VM_HUGEPAGE | VM_NOHUGEPAGE) == VM_NOHUGEPAGE
        assert len(proc.mm._vmas_in(a, a + 8 * P)) == 3
        return
    assert [(v.vm_start, v.vm_end) for v in proc.mm._vmas_in(a, a + 8 * P)] == [(a, a + 8 * P)]
    assert not proc.mm.vma_lookup(a).vm_flags & setf


def test_conform_populate(proc):
    """madv_populate_read: 16 faults, zero-page PTEs (populated, not dirty: madv_populate.c
    soft-dirty expectations); populate_write: 16 faults, then writes are free."""
    k = proc.machine.k
    a = proc.mmap(0, 16 * P, RW, ANON)
    f = flt(proc)
    proc.madvise(a, 16 * P, MADV_POPULATE_READ)
    assert flt(proc) - f == 16
    assert all(pfn_at(proc, a + i * P) == k.zero_pfn for i in range(16))
    assert not any(pte_at(proc, a + i * P) & T._PAGE_DIRTY for i in range(16))
    b = proc.mmap(0, 16 * P, RW, ANON)
    f = flt(proc)
    proc.madvise(b, 16 * P, MADV_POPULATE_WRITE)
    assert flt(proc) - f == 16
    assert all(pte_at(proc, b + i * P) & T._PAGE_DIRTY for i in range(16))
    proc.touch(b, 16 * P, write=True)
    assert flt(proc) - f == 16


def test_conform_populate_errnos(proc):
    """madv_populate_errno (measured) and madv_populate.c: permission mismatches are
    EINVAL with 0 faults; holes (middle, end, start) are ENOMEM after the pages before."""
    ro = proc.mmap(0, 16 * P, PROT_READ, ANON)
    f = flt(proc)
    assert errno_of(proc.madvise, ro, 16 * P, MADV_POPULATE_WRITE) == errno.EINVAL
    proc.madvise(ro, 16 * P, MADV_POPULATE_READ)
    wo = proc.mmap(0, 16 * P, PROT_WRITE, ANON)
    f = flt(proc)
    assert errno_of(proc.madvise, wo, 16 * P, MADV_POPULATE_READ) == errno.EINVAL
    assert flt(proc) == f
    proc.madvise(wo, 16 * P, MADV_POPULATE_WRITE)
    assert flt(proc) - f == 16
    none = proc.mmap(0, 16 * P, PROT_NONE, ANON)
    f = flt(proc)
    assert errno_of(proc.madvise, none, 16 * P, MADV_POPULATE_READ) == errno.EINVAL
    assert flt(proc) == f
    h = proc.mmap(0, 16 * P, RW, ANON)
    proc.munmap(h + 4 * P, 12 * P)
    f = flt(proc)
    assert errno_of(proc.madvise, h, 16 * P, MADV_POPULATE_WRITE) == errno.ENOMEM
    assert flt(proc) - f == 4
    assert errno_of(proc.madvise, h + 1, P, MADV_POPULATE_WRITE) == errno.EINVAL
    # madv_populate.c test_holes: hole in the middle / at the end / at the start.
    m = proc.mmap(0, 8 * P, RW, ANON)
    proc.munmap(m + P, P)
    for adv in (MADV_POPULATE_READ, MADV_POPULATE_WRITE):
        assert errno_of(proc.madvise, m, 8 * P, adv) == errno.ENOMEM
        assert errno_of(proc.madvise, m, 2 * P, adv) == errno.ENOMEM
        assert errno_of(proc.madvise, m + P, P, adv) == errno.ENOMEM


def test_pt_reclaim_frees_empty_pte_table(proc):
    """CONFIG_PT_RECLAIM: MADV_DONTNEED over a whole PMD frees the emptied PTE table;
    a partial DONTNEED keeps it."""
    big = proc.mmap(0, 4 << 20, RW, ANON)
    a = (big + (2 << 20) - 1) & ~((2 << 20) - 1)
    proc.touch(a, 2 << 20, write=True, stride=64 * P)
    before = proc.mm.pgtables_bytes
    proc.madvise(a, 64 * P, MADV_DONTNEED)
    assert proc.mm.pgtables_bytes == before
    proc.madvise(a, 2 << 20, MADV_DONTNEED)
    assert proc.mm.pgtables_bytes == before - 4096
    proc.touch(a, P, write=True)
    assert proc.read(a, 1) == b"\x01"


def test_remove_punches_shmem_hole(proc):
    """MADV_REMOVE on shared anon: the page is dropped from shmem and reads back 0
    (measured); on private anon EINVAL; read-only shared mappings still have
    VM_MAYWRITE, so it succeeds there too (measured)."""
    k = proc.machine.k
    s = proc.mmap(0, 4 * P, RW, MAP_SHARED | MAP_ANONYMOUS)
    proc.touch(s, 4 * P, write=True, value=ord("y"))
    mapping = proc.mm.vma_lookup(s).vm_file.f_mapping
    assert mapping.nrpages == 4
    proc.madvise(s, P, MADV_REMOVE)
    assert mapping.nrpages == 3 and 0 not in mapping.i_pages
    assert proc.read(s, 1) == b"\0" and proc.read(s + P, 1) == b"y"
    r = proc.mmap(0, 4 * P, PROT_READ, MAP_SHARED | MAP_ANONYMOUS)
    proc.madvise(r, P, MADV_REMOVE)
    a = proc.mmap(0, 4 * P, RW, ANON)
    assert errno_of(proc.madvise, a, P, MADV_REMOVE) == errno.EINVAL
    assert k.tlb_pending == []


def test_collapse_results(proc):
    """madvise_collapse(): a VMA without an aligned 2 MiB is EINVAL (measured); an empty
    aligned PMD range is EINVAL (measured, SCAN_PMD_NONE); a VMA without an anon_vma is
    EINVAL even for a range with no whole PMD (thp_vma_allowable_order is false: measured
    on 6.18.44, /tmp probe: madvise(d, 16 pages) -> EINVAL, then 0 after a write)."""
    a = proc.mmap(0, 16 * P, RW, ANON)
    assert errno_of(proc.madvise, a, 16 * P, MADV_COLLAPSE) == errno.EINVAL
    big = proc.mmap(0, 4 << 20, RW, ANON)
    d = (big + (2 << 20) - 1) & ~((2 << 20) - 1)
    assert errno_of(proc.madvise, d, 2 << 20, MADV_COLLAPSE) == errno.EINVAL
    assert errno_of(proc.madvise, d, 16 * P, MADV_COLLAPSE) == errno.EINVAL
    proc.write(d + 600 * P, b"x")                   # an anon_vma, in the next PMD
    assert errno_of(proc.madvise, d, 2 << 20, MADV_COLLAPSE) == errno.EINVAL
    proc.madvise(d, 16 * P, MADV_COLLAPSE)          # no whole PMD in the range: 0
    proc.madvise(d, 2 << 20, MADV_NOHUGEPAGE)
    assert errno_of(proc.madvise, d, 2 << 20, MADV_COLLAPSE) == errno.EINVAL


def test_cold_pageout_willneed_keep_data(proc):
    a = proc.mmap(0, 8 * P, RW, ANON)
    proc.touch(a, 8 * P, write=True, value=3)
    proc.madvise(a, 8 * P, MADV_COLD)
    assert not pte_at(proc, a) & T._PAGE_ACCESSED
    proc.madvise(a, 8 * P, MADV_PAGEOUT)
    proc.madvise(a, 8 * P, MADV_WILLNEED)
    assert proc.machine.k.mem.flags[pfn_at(proc, a)] & PG_lru
    assert proc.read(a + 7 * P, 1) == b"\x03"
