"""The mmu_gather: batching pages and tables to free until the TLB is flushed
(mm/mmu_gather.c, include/asm-generic/tlb.h).

Pages unmapped by a zap keep a reference held by the gather until tlb_flush_mmu()
has flushed the gathered range; only then are they freed (tlb_flush_mmu_free ->
free_pages_and_swap_cache -> folios_put). Page-table pages go the same way
(tlb_remove_table). Batch sizes are the kernel's: an embedded bundle of
MMU_GATHER_BUNDLE entries plus up to MAX_GATHER_BATCH_COUNT batches of
MAX_GATHER_BATCH; when they are full the zap forces a flush.

Delayed rmaps (CONFIG_SMP): a zap that clears a dirty file/shmem PTE keeps the page's
rmap until the TLB is flushed (tlb_delay_rmap, __tlb_remove_folio_pages with
delay_rmap), so nobody can see the folio unmapped (and write it back, or free it)
while a CPU may still write through a stale TLB entry; tlb_flush_rmaps() drops those
rmaps after the flush. While any are pending, at most the local bundle and one more
batch are used (tlb_next_batch), so they are all found there.
"""
import numpy as np

from vmsim.arch.x86.mm.tlb import flush_tlb_mm_range, TLB_FLUSH_ALL

from vmsim.mm.page_flags import PG_tail as _PG_TAIL

MMU_GATHER_BUNDLE = 8
MAX_GATHER_BATCH = (4096 - 16) // 8
MAX_GATHER_BATCH_COUNT = 10000 // MAX_GATHER_BATCH
# A flush of at least this many pages, all gathered by the compiled runs, hands
# folios_put() their array (folios_put's compiled run takes batches from 64).
_MIN_ARRAY = 64


class mmu_gather:
    """struct mmu_gather."""
    __slots__ = ("mm", "fullmm", "need_flush_all", "freed_tables", "cleared_ptes",
                 "cleared_pmds", "cleared_puds", "cleared_p4ds", "start", "end",
                 "_pages", "_buf", "_nbuf", "tables", "page_size", "delayed_rmap", "delayed",
                 "active", "active_nr", "batch_count")

    def __init__(self, mm, fullmm=False):
        self.mm = mm
        self.fullmm = fullmm
        self._pages = []
        # vmsim's compiled zap runs gather into an int64 array (the kernel's batches are
        # arrays of encoded pages too); they follow the list's entries in gather order.
        self._buf = None
        self._nbuf = 0
        self.tables = []
        self.page_size = 4096
        self.delayed_rmap = False
        self.delayed = []           # pages gathered with ENCODED_PAGE_BIT_DELAY_RMAP
        self.active = 0             # the active batch: 0 = tlb->local
        self.active_nr = 0          # its ->nr
        self.batch_count = 0        # batches allocated beyond local
        self.need_flush_all = False

    @property
    def _gathered(self) -> list:
        """The gathered pages in order (the runs' array moved onto the list first)."""
        n = self._nbuf
        if n:
            self._nbuf = 0
            self._pages.extend(self._buf[:n].tolist())
        return self._pages


def __tlb_reset_range(tlb):
    """include/asm-generic/tlb.h:__tlb_reset_range(): an empty range and no levels
    cleared (a full-mm gather's range stays everything)."""
    if tlb.fullmm:
        tlb.start, tlb.end = 0, TLB_FLUSH_ALL
    else:
        tlb.start, tlb.end = 1 << 64, 0
    tlb.freed_tables = False
    tlb.cleared_ptes = tlb.cleared_pmds = tlb.cleared_puds = tlb.cleared_p4ds = False


def __tlb_gather_mmu(mm, fullmm) -> mmu_gather:
    """mm/mmu_gather.c:__tlb_gather_mmu()."""
    tlb = mmu_gather(mm, fullmm)
    __tlb_reset_range(tlb)
    return tlb


def tlb_gather_mmu(mm) -> mmu_gather:
    """tlb_gather_mmu(): start gathering for a range unmap."""
    return __tlb_gather_mmu(mm, False)


def tlb_gather_mmu_fullmm(mm) -> mmu_gather:
    """tlb_gather_mmu_fullmm(): gathering for exit_mmap (the whole mm goes)."""
    return __tlb_gather_mmu(mm, True)


def __tlb_adjust_range(tlb, address: int, size: int):
    if not tlb.fullmm:
        tlb.start = min(tlb.start, address)
        tlb.end = max(tlb.end, address + size)


def tlb_remove_tlb_entry(tlb, ptep: int, address: int):
    """tlb_remove_tlb_entry(): widen the range to flush by one page."""
    tlb_flush_pte_range(tlb, address, 4096)


def tlb_flush_pte_range(tlb, address: int, size: int):
    """tlb_flush_pte_range(): widen the range; PTEs were cleared or changed."""
    __tlb_adjust_range(tlb, address, size)
    tlb.cleared_ptes = True


def tlb_flush_pmd_range(tlb, address: int, size: int):
    """tlb_flush_pmd_range(): widen the range; a PMD level was cleared, so the flush may
    go in PMD strides (tlb_get_unmap_shift)."""
    __tlb_adjust_range(tlb, address, size)
    tlb.cleared_pmds = True


def tlb_remove_pmd_tlb_entry(tlb, pmdp: int, address: int):
    """tlb_remove_pmd_tlb_entry(): a huge PMD's translation goes with the next flush."""
    tlb_flush_pmd_range(tlb, address, 1 << 21)


def tlb_delay_rmap(tlb) -> bool:
    """tlb_delay_rmap() (CONFIG_SMP): note that rmaps are delayed; always True."""
    tlb.delayed_rmap = True
    return True


def tlb_next_batch(tlb) -> bool:
    """tlb_next_batch(): move to the next batch (allocating one up to
    MAX_GATHER_BATCH_COUNT); refused while delayed rmaps sit outside the local one."""
    if tlb.delayed_rmap and tlb.active != 0:
        return False
    if tlb.active < tlb.batch_count:                # batch->next already allocated
        tlb.active += 1
        tlb.active_nr = 0
        return True
    if tlb.batch_count == MAX_GATHER_BATCH_COUNT:
        return False
    tlb.batch_count += 1
    tlb.active += 1
    tlb.active_nr = 0
    return True


def __tlb_remove_folio_pages(tlb, pfn: int, nr: int = 1, delay_rmap: bool = False) -> bool:
    """__tlb_remove_folio_pages(): gather a page (its rmap still to drop when
    ``delay_rmap``); return True when the batches are full and a flush is forced."""
    tlb._gathered.append(pfn)
    if delay_rmap:
        tlb.delayed.append(pfn)
    tlb.active_nr += 1
    # Make sure another "page" + "nr_pages" always fits: two entries.
    batch_max = MMU_GATHER_BUNDLE if tlb.active == 0 else MAX_GATHER_BATCH
    if tlb.active_nr >= batch_max - 1:
        if not tlb_next_batch(tlb):
            return True
    return False


def tlb_flush_rmaps(tlb, vma):
    """tlb_flush_rmaps(): after the TLB flush, drop the rmaps the zap delayed."""
    from vmsim.mm.rmap import folio_remove_rmap_pte
    if not tlb.delayed_rmap:
        return
    k = tlb.mm.kernel
    delayed, tlb.delayed = tlb.delayed, []
    for pfn in delayed:
        folio_remove_rmap_pte(k, pfn, vma)
    tlb.delayed_rmap = False


def pte_free_tlb(tlb, table_pfn: int, address: int):
    """pte_free_tlb(): free a PTE table after the flush (tlb_remove_table)."""
    __tlb_adjust_range(tlb, address, 4096)
    tlb.freed_tables = True
    tlb.cleared_pmds = True
    tlb.tables.append(table_pfn)


def pmd_free_tlb(tlb, table_pfn: int, address: int):
    __tlb_adjust_range(tlb, address, 4096)
    tlb.freed_tables = True
    tlb.cleared_puds = True
    tlb.tables.append(table_pfn)


def pud_free_tlb(tlb, table_pfn: int, address: int):
    __tlb_adjust_range(tlb, address, 4096)
    tlb.freed_tables = True
    tlb.cleared_p4ds = True
    tlb.tables.append(table_pfn)


p4d_free_tlb = pud_free_tlb


def tlb_get_unmap_shift(tlb) -> int:
    """tlb_get_unmap_shift(): the stride of the flush, the smallest level cleared."""
    if tlb.cleared_ptes:
        return 12
    if tlb.cleared_pmds:
        return 21
    if tlb.cleared_puds:
        return 30
    if tlb.cleared_p4ds:
        return 39
    return 12


def tlb_flush(tlb):
    """tlb_flush() (arch/x86/include/asm/tlb.h): flush_tlb_mm_range over the gathered
    range in strides of the smallest level cleared (a PMD for a huge-page-only unmap)."""
    start, end = 0, TLB_FLUSH_ALL
    if not tlb.fullmm and not tlb.need_flush_all:
        start, end = tlb.start, tlb.end
    flush_tlb_mm_range(tlb.mm, start, end, tlb_get_unmap_shift(tlb), tlb.freed_tables)


def tlb_flush_mmu_tlbonly(tlb):
    """tlb_flush_mmu_tlbonly(): flush the gathered range, if any, and reset it."""
    # Anything that widened the range also set one of these (__tlb_adjust_range's callers).
    if not (tlb.freed_tables or tlb.cleared_ptes or tlb.cleared_pmds or
            tlb.cleared_puds or tlb.cleared_p4ds):
        return
    tlb_flush(tlb)
    __tlb_reset_range(tlb)


def tlb_flush_mmu_free(tlb):
    """tlb_flush_mmu_free(): free the gathered tables and pages."""
    from vmsim.arch.x86.mm.pgtable import pagetable_free
    from vmsim.mm.swap import folios_put
    k = tlb.mm.kernel
    tables, tlb.tables = tlb.tables, []
    for pfn in tables:
        pagetable_free(k, pfn)
    pages, tlb._pages = tlb._pages, []
    n = tlb._nbuf
    if n:
        tlb._nbuf = 0
        if pages or n < _MIN_ARRAY:
            pages.extend(tlb._buf[:n].tolist())
        else:
            pages = tlb._buf[:n].copy()             # only the compiled runs gathered
    tlb.active = tlb.active_nr = 0                   # tlb_batch_pages_flush: back to local
    flags = k.mem.flags
    if len(pages) > 64:
        tail = bool((k.mem.np_flags[np.asarray(pages, dtype=np.int64)] & _PG_TAIL).any())
    else:
        tail = any(flags[p] & _PG_TAIL for p in pages)
    if tail:                                          # free_pages_and_swap_cache: page_folio()
        from vmsim.mm.folio import page_folio
        if isinstance(pages, np.ndarray):
            pages = pages.tolist()
        pages = [page_folio(k, p) if flags[p] & _PG_TAIL else p for p in pages]
    folios_put(k, pages)


def tlb_flush_mmu(tlb):
    """tlb_flush_mmu(): flush the TLB, then free what was gathered."""
    tlb_flush_mmu_tlbonly(tlb)
    tlb_flush_mmu_free(tlb)


def tlb_finish_mmu(tlb):
    """tlb_finish_mmu(): the final flush and free."""
    tlb_flush_mmu(tlb)


def gather_refs(k) -> dict:
    """Return {pfn: references held by live gathers} (always empty between syscalls)."""
    return {}
