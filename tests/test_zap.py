"""zap_pte_range as 6.18 (mm/memory.c zap_present_folio_ptes, mm/mmu_gather.c):
dirty file/shmem PTEs delay their rmap removal and force the TLB flush before the
page-table lock is dropped; zap_details.even_cows / should_zap_folio decide what
unmap_mapping_range() takes from private mappings. Expected values from the source."""
import pytest

import vmsim
from vmsim import PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_SHARED, MAP_ANONYMOUS, MADV_DONTNEED
from vmsim.mm import mmu_gather

from vmtest import pfn_at

P = 4096
RW = PROT_READ | PROT_WRITE


@pytest.fixture
def flushes(monkeypatch):
    """Record, at each TLB flush, its range and the mapcount of the watched pages."""
    rec = []
    watch = {}
    real = mmu_gather.flush_tlb_mm_range

    def spy(mm, start, end, *a, **kw):
        k = mm.kernel
        rec.append((start, end, {a: k.mem.mapcount[pfn] for a, pfn in watch.items()}))
        return real(mm, start, end, *a, **kw)
    monkeypatch.setattr(mmu_gather, "flush_tlb_mm_range", spy)
    return rec, watch


def _two_tables(p, flags):
    """A 1024-page mapping starting on a PTE-table boundary (two whole tables)."""
    r = p.mmap(0, 3 << 21, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS)
    base = (r + (1 << 21) - 1) & ~((1 << 21) - 1)
    p.munmap(r, 3 << 21)
    return p.mmap(base, 2 << 21, RW, flags | vmsim.MAP_FIXED)


def test_dirty_shmem_ptes_flush_before_their_rmap_goes_per_table(flushes):
    rec, watch = flushes
    m = vmsim.Machine("256M")
    p = m.spawn()
    a = _two_tables(p, MAP_SHARED | MAP_ANONYMOUS)
    p.touch(a, 2 << 21, write=True, stride=64 * P)      # 16 dirty shmem pages, 8 per table
    watch.update({a: pfn_at(p, a), a + (1 << 21): pfn_at(p, a + (1 << 21))})
    rec.clear()
    p.madvise(a, 2 << 21, MADV_DONTNEED)
    # zap_present_folio_ptes: pte_dirty -> tlb_delay_rmap, force_flush; zap_pte_range
    # flushes (tlb_flush_mmu_tlbonly) then tlb_flush_rmaps before pte_unmap_unlock, for
    # each PTE table: at the first flush the first table's page is still mapped and
    # the second table's untouched; at the second, the second table's is still mapped.
    # (MADV_DONTNEED also frees each emptied table, pte_free_tlb widening the next
    # flush to the table's first page: the first into the second table's flush, the
    # last one flushed by tlb_finish_mmu.)
    b = a + (1 << 21)
    assert rec == [(a, b - 63 * P, {a: 1, b: 1}),
                   (a, b + (1 << 21) - 63 * P, {a: 0, b: 1}),
                   (b, b + P, {a: 0, b: 0})]
    assert p.read(a, 1) == b"\x01"                      # shmem keeps the data


def test_clean_shmem_and_anon_ptes_drop_rmap_at_once_one_flush(flushes):
    rec, watch = flushes
    m = vmsim.Machine("256M")
    p = m.spawn()
    # A read-only shared mapping's PTEs are never dirty (set_pte_range makes a PTE
    # dirty only on a write or when it is writable and the folio dirty).
    s = _two_tables(p, MAP_SHARED | MAP_ANONYMOUS)
    p.mprotect(s, 2 << 21, PROT_READ)
    p.touch(s, 2 << 21, stride=64 * P)
    a = _two_tables(p, MAP_PRIVATE | MAP_ANONYMOUS)
    p.touch(a, 2 << 21, write=True, stride=64 * P)
    watch.update({s: pfn_at(p, s), a: pfn_at(p, a)})
    rec.clear()
    p.madvise(s, 2 << 21, MADV_DONTNEED)                # clean shmem: no delayed rmap
    assert [mc[s] for _, _, mc in rec] == [0]           # one flush, at tlb_finish_mmu
    rec.clear()
    p.madvise(a, 2 << 21, MADV_DONTNEED)                # anon: never delayed
    assert [mc[a] for _, _, mc in rec] == [0]


def _exe_setup():
    """The image's private writable data segment [0x4a4000, 0x4a7000): one page
    COWed (anon), one only read (the file's page cache page)."""
    m = vmsim.Machine("256M")
    p = m.spawn()
    p.write(0x4a4000, b"cow")
    assert p.read(0x4a5000, 1) == b"\0"
    vma = p.mm.vma_lookup(0x4a4000)
    return m, p, vma


@pytest.mark.parametrize("even_cows", [0, 1])
def test_unmap_mapping_range_even_cows_decides_private_cow_pages(even_cows):
    from vmsim.mm.memory import unmap_mapping_range
    m, p, vma = _exe_setup()
    cow, file_pfn = pfn_at(p, 0x4a4000), pfn_at(p, 0x4a5000)
    assert cow >= 0 and file_pfn >= 0
    p._enter()
    # unmap_mapping_range(mapping, offset of the segment, 2 pages, even_cows):
    # should_zap_folio keeps anon (COWed) folios unless even_cows; file folios go.
    unmap_mapping_range(m.k, vma.vm_file.f_mapping, vma.vm_pgoff << 12, 2 * P, even_cows)
    p._done()
    assert pfn_at(p, 0x4a5000) == -1
    assert pfn_at(p, 0x4a4000) == (-1 if even_cows else cow)
    assert p.read(0x4a4000, 3) == (b"\0\0\0" if even_cows else b"cow")


def test_madv_remove_zaps_the_file_pages_of_private_mappings_keeps_their_cows():
    """MADV_REMOVE -> shmem_fallocate(PUNCH_HOLE) -> unmap_mapping_range(.., 0): the
    hole's pages leave every mapping of the file, private ones included, but a private
    mapping's COWed copies stay (should_zap_folio without even_cows). Measured on this
    machine (6.18.44) with a memfd mapped MAP_SHARED (s) and MAP_PRIVATE (p), 'A'
    written to every page through s, p[0] read, p[1] = 'B', then MADV_REMOVE of s:
    s0=0 s1=0 p0=0 p1=B p2=0 (vmsim/conform/probes/remove_private_probe.c).

    vmsim cannot open a memfd yet (the file issue), so p is built as the kernel's
    mmap(MAP_PRIVATE | MAP_NORESERVE) of s's shmem file would leave it: a second
    shared-anon VMA given s's file and made private."""
    from vmsim.mm.mm_types import VM_SHARED, VM_MAYSHARE
    from vmsim.mm.mmap import vma_set_page_prot
    from vmsim.mm.vma import get_file, fput
    m = vmsim.Machine("256M")
    proc = m.spawn()
    s = proc.mmap(0, 4 * P, RW, MAP_SHARED | MAP_ANONYMOUS)
    for i in range(4):
        proc.write(s + i * P, b"A")
    p = proc.mmap(0, 4 * P, RW, MAP_SHARED | MAP_ANONYMOUS | vmsim.MAP_NORESERVE)
    k = m.k
    sv, pv = proc.mm.vma_lookup(s), proc.mm.vma_lookup(p)
    old = pv.vm_file
    get_file(sv.vm_file)
    pv.vm_file = sv.vm_file
    fput(k, old)
    pv.vm_flags &= ~(VM_SHARED | VM_MAYSHARE)
    vma_set_page_prot(pv)
    m.check()
    assert proc.read(p, 1) == b"A"
    proc.write(p + P, b"B")
    proc.madvise(s, 4 * P, vmsim.MADV_REMOVE)
    got = [proc.read(a, 1) for a in (s, s + P, p, p + P, p + 2 * P)]
    assert got == [b"\0", b"\0", b"\0", b"B", b"\0"]
